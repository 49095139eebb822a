"""/v1/unsubscribe/{token}: RFC 8058 one-click unsubscribe, public (no API key).

``POST`` unsubscribes (crm/email/unsubscribe.py): a mail client's one-click request
(``List-Unsubscribe=One-Click``, form-encoded) or the confirmation page's button. ``GET``
only shows that page: link scanners follow GETs and must not unsubscribe anyone. Both
answer HTML; a forged or malformed link is 404 (a page for a browser, a problem for any
other client), never saying why. The token is the credential: the pages are not cached,
not indexed and send no referrer.
"""

from __future__ import annotations

import html

from chalice import Blueprint

from api.http import HTML, Html, Request, Result, endpoint

bp = Blueprint(__name__)

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
}
_STYLE = (
    "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f6f7f9;color:#1d2330;"
    "margin:0;padding:3rem 1rem}main{max-width:32rem;margin:auto;background:#fff;border-radius:8px;"
    "padding:2rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}h1{font-size:1.4rem;margin-top:0}"
    "button{font:inherit;background:#1d4ed8;color:#fff;border:0;border-radius:6px;padding:.7rem 1.4rem;"
    "cursor:pointer}p.small{color:#5b6475;font-size:.9rem}"
)


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex,nofollow">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _sender(name: str | None) -> str:
    return html.escape(name) if name else "this sender"


def _not_found(req: Request) -> Result:
    """A browser gets a page; an API client the usual problem (the same 404 either way)."""
    from crm.errors import NotFound

    if "text/html" in (req.headers.get("accept") or ""):
        page = _page(
            "Link not valid",
            "<h1>This unsubscribe link is not valid</h1>"
            "<p>Check that the whole link was copied from the email, or use the link in a newer email.</p>",
        )
        return Result(404, Html(page), dict(_HEADERS))
    raise NotFound("this unsubscribe link is not valid")


@endpoint(
    bp,
    "/v1/unsubscribe/{token}",
    "GET",
    operation_id="showUnsubscribe",
    tag="email",
    scope=None,
    summary="The confirmation page of a one-click unsubscribe link (HTML): a button that POSTs to the same URL. "
    "A GET changes nothing (link scanners follow GETs); 404 for a link that is not valid",
    responses={200: HTML},
    errors=(404,),
)
def show_unsubscribe(req: Request) -> Result:
    from crm.email import unsubscribe
    from crm.errors import NotFound

    try:
        target = unsubscribe.verify(req.params["token"])
    except NotFound:
        return _not_found(req)
    sender = _sender(target.tenant_name)
    page = _page(
        "Unsubscribe",
        f"<h1>Unsubscribe from {sender}?</h1>"
        f"<p>You will no longer receive marketing emails from {sender}.</p>"
        # the form posts to this same URL (no action attribute): the token never leaves it
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
        '<p class="small">Emails about your orders and account may still be sent.</p>',
    )
    return Result(200, Html(page), dict(_HEADERS))


@endpoint(
    bp,
    "/v1/unsubscribe/{token}",
    "POST",
    operation_id="unsubscribe",
    tag="email",
    scope=None,
    summary="RFC 8058 one-click unsubscribe, no API key: email consent becomes denied (source unsubscribe), the "
    "address is suppressed, the campaign counts it; idempotent (HTML). 404 for a link that is not valid",
    responses={200: HTML},
    errors=(404, 413),
    form=True,
    max_body=4096,
)
def post_unsubscribe(req: Request) -> Result:
    from crm.email import unsubscribe
    from crm.errors import NotFound

    try:
        target = unsubscribe.verify(req.params["token"])
    except NotFound:
        return _not_found(req)
    unsubscribe.unsubscribe(target)
    page = _page(
        "Unsubscribed",
        "<h1>You are unsubscribed</h1>"
        f"<p>You will no longer receive marketing emails from {_sender(target.tenant_name)}.</p>",
    )
    return Result(200, Html(page), dict(_HEADERS))
