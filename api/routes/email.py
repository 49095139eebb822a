"""/v1/email: templates (CRUD, preview), the tenant's email settings and its sender
identities (crm/email/{templates,settings,senders}.py; docs/email.md)."""

from __future__ import annotations

from urllib.parse import unquote

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "email"
READ, WRITE = "email:read", "email:write"
_TPL = "/v1/email/templates/{template_id}"
_SENDER = "/v1/email/senders/{identity}"
MAX_TEMPLATE_BODY = 512 * 1024  # a template's HTML and text (100,000 characters each, UTF-8)


def _etag(template: object) -> dict[str, str]:
    return {"ETag": f'"{template.version}"'}  # type: ignore[attr-defined]


@endpoint(
    bp,
    "/v1/email/templates",
    "POST",
    operation_id="createEmailTemplate",
    tag=TAG,
    scope=WRITE,
    summary="Create a template (jinja2, sandboxed): CSS inlined, text derived when left out; 422 names "
    "the part and the line of a syntax error, an unknown variable or a refused construct; a marketing "
    "template must contain {{ unsubscribe_url }} and {{ postal_address }}",
    body="TemplateCreate",
    responses={201: "Template"},
    errors=(409,),
    idempotent=True,
    max_body=MAX_TEMPLATE_BODY,
)
def create_template(req: Request) -> Result:
    from crm.email import templates

    template = templates.create(req.ctx, req.body)
    return Result(201, template, {**_etag(template), "Location": f"/v1/email/templates/{template.id}"})


@endpoint(
    bp,
    "/v1/email/templates",
    "GET",
    operation_id="listEmailTemplates",
    tag=TAG,
    scope=READ,
    summary="The tenant's templates, oldest first",
    query="PageQuery",
    responses={200: "TemplatePage"},
)
def list_templates(req: Request) -> Result:
    from crm.email import templates

    page = templates.list_(req.ctx, req.query.cursor, req.query.limit)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    _TPL,
    "GET",
    operation_id="getEmailTemplate",
    tag=TAG,
    scope=READ,
    summary="A template: as given (source_html) and as sent (html with its CSS inlined, text)",
    responses={200: "Template"},
    errors=(404,),
)
def get_template(req: Request) -> Result:
    from crm.email import templates

    template = templates.get(req.ctx, req.params["template_id"])
    return Result(200, template, _etag(template))


@endpoint(
    bp,
    _TPL,
    "PATCH",
    operation_id="updateEmailTemplate",
    tag=TAG,
    scope=WRITE,
    summary="Change a template (validated again as a whole; text: null derives the text again); "
    "If-Match with a stale ETag gets 412",
    body="TemplatePatch",
    responses={200: "Template"},
    errors=(404, 409, 412),
    if_match=True,
    max_body=MAX_TEMPLATE_BODY,
)
def update_template(req: Request) -> Result:
    from crm.email import templates

    template = templates.update(req.ctx, req.params["template_id"], req.body, req.if_match)
    return Result(200, template, _etag(template))


@endpoint(
    bp,
    _TPL,
    "DELETE",
    operation_id="deleteEmailTemplate",
    tag=TAG,
    scope=WRITE,
    summary="Delete a template; If-Match with a stale ETag gets 412",
    responses={204: None},
    errors=(400, 404, 412),
    if_match=True,
)
def delete_template(req: Request) -> Result:
    from crm.email import templates

    templates.delete(req.ctx, req.params["template_id"], req.if_match)
    return Result(204)


@endpoint(
    bp,
    _TPL + "/preview",
    "POST",
    operation_id="previewEmailTemplate",
    tag=TAG,
    scope=READ,
    summary="Render the template for one customer (subject, html, text) with a preview unsubscribe "
    "link; 404 unknown template or customer; 422 names the part and line of a render error",
    body="TemplatePreviewRequest",
    responses={200: "TemplatePreview"},
    errors=(404, 410),
)
def preview_template(req: Request) -> Result:
    from crm.email import templates

    return Result(200, templates.preview(req.ctx, req.params["template_id"], req.body.customer_id))


@endpoint(
    bp,
    "/v1/email/settings",
    "GET",
    operation_id="getEmailSettings",
    tag=TAG,
    scope=READ,
    summary="The tenant's email settings: postal address, default sender, from name, reply-to",
    responses={200: "EmailSettings"},
)
def get_settings(req: Request) -> Result:
    from crm.email import settings

    return Result(200, settings.get(req.ctx))


@endpoint(
    bp,
    "/v1/email/settings",
    "PUT",
    operation_id="putEmailSettings",
    tag=TAG,
    scope=WRITE,
    summary="Replace the email settings (a field left out is cleared); the default sender must be an "
    "address of a verified sender identity (422 sender_not_verified)",
    body="EmailSettingsPut",
    responses={200: "EmailSettings"},
    errors=(409,),
)
def put_settings(req: Request) -> Result:
    from crm.email import settings

    return Result(200, settings.put(req.ctx, req.body))


@endpoint(
    bp,
    "/v1/email/senders",
    "POST",
    operation_id="createEmailSender",
    tag=TAG,
    scope=WRITE,
    summary="Add a sender identity (a domain or an address) in SES: 201 with the DKIM CNAME records to "
    "publish (a domain) and its status (pending until SES verifies it); 200 when the tenant has it "
    "already; 409 identity_taken or sender_limit",
    body="SenderCreate",
    responses={201: "Sender", 200: "Sender"},
    errors=(409,),
)
def create_sender(req: Request) -> Result:
    from crm.email import senders

    sender, created = senders.create(req.ctx, req.body.identity)
    return Result(201 if created else 200, sender, {"Location": f"/v1/email/senders/{sender.identity}"})


@endpoint(
    bp,
    "/v1/email/senders",
    "GET",
    operation_id="listEmailSenders",
    tag=TAG,
    scope=READ,
    summary="The tenant's sender identities (pending ones refreshed from SES)",
    responses={200: "SenderList"},
)
def list_senders(req: Request) -> Result:
    from crm.email import senders

    return Result(200, {"data": senders.list_(req.ctx)})


@endpoint(
    bp,
    _SENDER,
    "GET",
    operation_id="getEmailSender",
    tag=TAG,
    scope=READ,
    summary="A sender identity: its DKIM records and status, refreshed from SES",
    responses={200: "Sender"},
    errors=(404,),
)
def get_sender(req: Request) -> Result:
    from crm.email import senders

    return Result(200, senders.get(req.ctx, unquote(req.params["identity"])))


@endpoint(
    bp,
    _SENDER,
    "DELETE",
    operation_id="deleteEmailSender",
    tag=TAG,
    scope=WRITE,
    summary="Remove a sender identity (from SES too); 409 sender_in_use while it sends the default sender",
    responses={204: None},
    errors=(404, 409),
)
def delete_sender(req: Request) -> Result:
    from crm.email import senders

    senders.delete(req.ctx, unquote(req.params["identity"]))
    return Result(204)
