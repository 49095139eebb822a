"""The one decorator every route uses: authentication, scope, body and query
validation, Idempotency-Key, and errors as problem+json.

It also records each operation in :data:`OPERATIONS`, from which
:mod:`api.openapi` builds the OpenAPI document: the models named here are the ones
that validate the request, so the document cannot drift from the code.
Models are named as strings and resolved from :mod:`api.schemas` on first use.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalice import Blueprint, Response

from api.lambda_env import logger  # re-exported: the routes log through it
from api.problems import from_domain, from_validation, problem

MAX_BODY_BYTES = 64 * 1024
# an ETag from a response ("3" or W/"3"), tolerated without its quotes (3), or *
IF_MATCH_PATTERN = r'^(?:W/)?(?P<q>"?)(?P<version>[0-9]{1,12})(?P=q)$|^\*$'
# routes whose key is read afresh on every request (no 60 s key cache): a revoked key
# loses them at once. admin; and webhooks:write, which chooses where events are sent
FRESH_KEY_SCOPES = ("admin", "webhooks:write")
MAX_JSON_DEPTH = 32  # objects and arrays nested deeper than this are refused (422 too_deep)


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    operation_id: str
    summary: str
    scope: str | None
    body: str | None
    query: str | None
    responses: dict[int, str | None]
    errors: tuple[int, ...]
    tag: str
    idempotent: bool
    if_match: bool
    max_body: int
    idempotency_required: bool = False
    form: bool = False  # an optional HTML-form body (not parsed; read ``Request.raw``)


OPERATIONS: list[Operation] = []


def model(name: str) -> Any:
    from api import schemas

    return getattr(schemas, name)


@dataclass
class Request:
    """What a handler sees: the tenant context and already-validated inputs."""

    ctx: Any
    params: dict[str, str]
    body: Any = None
    query: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    if_match: int | None = None
    lambda_context: Any = None
    raw: bytes = b""  # the body as received (webhook signatures are over these bytes)


HTML = "text/html"  # a response "model" that is an HTML page (``Result(200, Html(...))``)
# a form's body: what browsers and mail clients POST (RFC 8058 one-click unsubscribe);
# application/json too, which Chalice assumes for a request without a Content-Type
FORM_CONTENT_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data", "application/json"]


@dataclass(frozen=True)
class Html:
    """A ``text/html`` body: a page for browsers (the public unsubscribe routes)."""

    text: str


@dataclass
class Result:
    status: int
    body: Any = None  # a pydantic model, a dict/list, or None for 204
    headers: dict[str, str] = field(default_factory=dict)
    # what an Idempotency-Key replay answers instead of ``body``: a body holding a
    # one-time secret (a webhook endpoint's) is never stored, its replay omits the secret
    replay_body: Any = None


def _json(body: Any) -> str:
    from pydantic import BaseModel

    if isinstance(body, BaseModel):
        return body.model_dump_json()
    return json.dumps(body, default=_default)


def _default(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _bearer(headers: Any) -> str | None:
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _parse_if_match(value: str | None) -> int | None:
    from crm.errors import DomainError

    if value is None or value.strip() == "*":
        return None
    match = re.fullmatch(IF_MATCH_PATTERN, value.strip())
    if match is None:
        raise DomainError(
            'If-Match must be an ETag from a previous response, e.g. "3"', field="If-Match", code="invalid_header"
        )
    return int(match.group("version"))


def endpoint(
    bp: Blueprint,
    path: str,
    method: str,
    *,
    operation_id: str,
    summary: str,
    tag: str,
    scope: str | None,
    body: str | None = None,
    query: str | None = None,
    responses: dict[int, str | None],
    errors: tuple[int, ...] = (),
    idempotent: bool | str = False,
    if_match: bool = False,
    max_body: int = MAX_BODY_BYTES,
    form: bool = False,
) -> Callable:
    """Declare a route. The handler takes a :class:`Request` and returns a :class:`Result`.
    ``idempotent="required"``: the route refuses a request without ``Idempotency-Key``.
    ``form``: the route takes an optional HTML-form body, unparsed (``Request.raw``)."""
    auth_errors: tuple[int, ...] = (401, 403) if scope else ()
    input_errors: tuple[int, ...] = ((400, 413, 415, 422) if body else ()) + ((400, 422) if query else ())
    idem_errors: tuple[int, ...] = (409, 422) if idempotent else ()
    if idempotent == "required":
        idem_errors += (400,)
    # every route is rate limited (429); a scoped write may meet a past-due plan or a limit (402)
    billing_errors: tuple[int, ...] = (429,) + ((402,) if scope and method != "GET" else ())
    op = Operation(
        path,
        method,
        operation_id,
        summary,
        scope,
        body,
        query,
        responses,
        tuple(sorted(set(errors + auth_errors + input_errors + idem_errors + billing_errors))),
        tag,
        bool(idempotent),
        if_match,
        max_body,
        idempotent == "required",
        form,
    )
    OPERATIONS.append(op)

    def decorate(handler: Callable[[Request], Result]) -> Callable:
        content_types = ["application/json", "application/merge-patch+json"] if body else None
        if form:
            content_types = FORM_CONTENT_TYPES
        route_kwargs = {"methods": [method]}
        if content_types:
            route_kwargs["content_types"] = content_types

        @bp.route(path, **route_kwargs)
        @functools.wraps(handler)
        def view(**params: str) -> Response:
            started = time.perf_counter()
            limited: dict[str, str] = {}  # the RateLimit-* headers, on every answer
            try:
                response = _serve(bp, op, handler, params, limited)
            except Exception as exc:  # noqa: BLE001 - the last line of defence
                from crm.errors import DomainError

                if isinstance(exc, DomainError):
                    response = from_domain(exc)
                else:
                    logger().exception("unhandled error", extra={"operation": op.operation_id})
                    response = problem(500, "internal_error", "an internal error occurred")
            response.headers = {**(response.headers or {}), **limited}
            logger().info(
                "request",
                extra={
                    "operation": op.operation_id,
                    "status": response.status_code,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            return response

        return view

    return decorate


def _source_ip(request: Any) -> str | None:
    """The caller's address as API Gateway (and the local server) reports it."""
    return ((getattr(request, "context", None) or {}).get("identity") or {}).get("sourceIp")


def _rate_limit(request: Any, ctx: Any, limited: dict[str, str]) -> None:
    """Take a token (crm/billing/ratelimit.py): the tenant's, at its plan's rate, or for a
    request without a (valid) key its source address's; 429 ``rate_limited`` when none is left."""
    from crm.billing import plans, ratelimit
    from crm.errors import RateLimited

    if ctx is not None:
        decision = ratelimit.check(ctx.tenant_id, plans.get(ctx.billing.plan).limits.requests_per_second)
    else:
        decision = ratelimit.check_anonymous(_source_ip(request))
    limited.update(decision.headers())
    if not decision.allowed:
        raise RateLimited(
            f"over the plan's {decision.limit} requests per second; retry in {decision.retry_after} s",
            limit=decision.limit,
            retry_after=decision.retry_after,
        )


def _past_due(op: Operation, ctx: Any) -> None:
    """A past-due subscription beyond its grace period: writes answer 402 until an invoice
    is paid; reads, and the billing routes (to pay), keep working."""
    from crm import clock
    from crm.errors import PaymentRequired

    if op.method in ("GET", "HEAD", "OPTIONS") or op.path.startswith("/v1/billing"):
        return

    def overdue(billing: Any) -> bool:
        return bool(
            billing.status == "past_due" and billing.grace_until and clock.now() >= clock.parse(billing.grace_until)
        )

    if overdue(ctx.billing):
        from crm.billing import limits

        billing = limits.state_now(ctx)  # the key's copy may be cached from before the payment
        if not overdue(billing):
            return
        raise PaymentRequired(
            f"the subscription is past due since before {billing.grace_until}: writes are refused until "
            "an invoice is paid (POST /v1/billing/portal); reads keep working",
            code="payment_required",
            plan=billing.plan,
            grace_until=billing.grace_until,
        )


def _serve(
    bp: Blueprint, op: Operation, handler: Callable, params: dict[str, str], limited: dict[str, str]
) -> Response:
    from pydantic import ValidationError

    from crm import apikeys
    from crm.errors import DomainError, Forbidden

    request = bp.current_request
    headers = request.headers
    ctx = None
    if op.scope:
        try:
            ctx = apikeys.authenticate(_bearer(headers), fresh=op.scope in FRESH_KEY_SCOPES)
        except DomainError:
            _rate_limit(request, None, limited)  # a wrong key is limited by its source
            raise
    _rate_limit(request, ctx, limited)
    if ctx is not None and op.scope:
        _past_due(op, ctx)
        if not ctx.allows(op.scope):
            raise Forbidden(
                f"this API key lacks the {op.scope} scope",
                field="scope",
                code="insufficient_scope",
                required_scope=op.scope,
            )
    req = Request(ctx=ctx, params=params, headers=dict(headers), lambda_context=getattr(bp, "lambda_context", None))
    if op.query:
        raw_query = dict(request.query_params or {})
        try:
            req.query = model(op.query).model_validate(raw_query)
        except ValidationError as exc:
            return from_validation(exc, where="query parameter")
    raw = request.raw_body or b""
    if isinstance(raw, str):  # Chalice types raw_body as str | bytes; API Gateway gives bytes
        raw = raw.encode()
    req.raw = raw
    if len(raw) > op.max_body:  # also for routes that take raw bytes (webhooks)
        return problem(413, "payload_too_large", f"the request body is {len(raw)} bytes; the limit is {op.max_body}")
    if op.body:
        data, refused = parse_json(raw)
        if refused is not None:
            return refused
        try:  # strict: a JSON true is not 1, a "5" is not 5 (as the document says)
            req.body = model(op.body).model_validate_json(json.dumps(_whole_floats_as_ints(data)), strict=True)
        except ValidationError as exc:
            return from_validation(exc, where="body")
    if op.if_match:
        req.if_match = _parse_if_match(headers.get("if-match"))
    idem_key = headers.get("idempotency-key") if op.idempotent else None
    if idem_key is not None and not idem_key.strip():
        return problem(
            400,
            "invalid_header",
            "Idempotency-Key is empty: send 1-255 printable ASCII characters, or leave the header out",
            field="Idempotency-Key",
        )
    if op.idempotency_required and not idem_key:
        return problem(
            400,
            "idempotency_key_required",
            "this request needs an Idempotency-Key header, so that a retry never applies it twice",
            field="Idempotency-Key",
        )
    if idem_key:
        from api import idempotency

        result = idempotency.run(op, req, idem_key, raw, lambda: _to_wire(handler(req)))
    else:
        result = _to_wire(handler(req))
    return Response(body=result["body"], status_code=result["status"], headers=result["headers"])


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json(raw: bytes) -> tuple[Any, Response | None]:
    """The body as JSON, or the problem that refuses it: 400 if it is not JSON, 422 if it
    nests deeper than :data:`MAX_JSON_DEPTH` (checked before parsing, which would recurse)
    or holds a lone UTF-16 surrogate (``"\\udfff"``: valid JSON, but no character, so
    it could be neither stored nor sent back)."""
    if not raw:
        return None, None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, problem(400, "invalid_json", f"the request body is not UTF-8: {exc.reason}")
    depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            return None, problem(
                422,
                "too_deep",
                f"the request body nests objects and arrays more than {MAX_JSON_DEPTH} deep",
                max_depth=MAX_JSON_DEPTH,
            )
    try:
        data = json.loads(text)
    except RecursionError:
        return None, problem(
            422, "too_deep", f"the request body nests more than {MAX_JSON_DEPTH} deep", max_depth=MAX_JSON_DEPTH
        )
    except ValueError as exc:
        return None, problem(400, "invalid_json", f"the request body is not valid JSON: {exc}")
    where = _lone_surrogate(data, "")
    if where is not None:
        return None, problem(
            422,
            "invalid_unicode",
            f"{where or 'the body'} contains a lone UTF-16 "
            "surrogate (an escape like \\udfff that is not half of a pair): "
            "not a character",
            field=where or None,
        )
    return data, None


def _whole_floats_as_ints(value: Any) -> Any:
    """5.0 is the integer 5 in JSON Schema (and to any JSON reader); strict validation
    would refuse it for an integer field."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_floats_as_ints(v) for v in value]
    return value


def _lone_surrogate(value: Any, path: str) -> str | None:
    """The path of the first string (key or value) holding a lone surrogate, if any."""
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else key
            if _SURROGATE.search(key):
                return _SURROGATE.sub("\ufffd", here)  # never echo the surrogate itself
            found = _lone_surrogate(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _lone_surrogate(item, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None


def _to_wire(result: Result) -> dict[str, Any]:
    """A JSON-safe dict (what the idempotency store keeps and replays)."""
    headers = dict(result.headers)
    if result.body is None:
        return {"status": result.status, "body": "", "headers": headers}
    if isinstance(result.body, Html):
        headers.setdefault("Content-Type", "text/html; charset=utf-8")
        return {"status": result.status, "body": result.body.text, "headers": headers}
    headers.setdefault("Content-Type", "application/json")
    wire = {"status": result.status, "body": _json(result.body), "headers": headers}
    if result.replay_body is not None:
        wire[REPLAY_BODY] = _json(result.replay_body)
    return wire


REPLAY_BODY = "replay_body"  # the wire dict's stored-instead body (api/idempotency.py)


def rate_limit_the_rest(event: Any, get_response: Any) -> Response:
    """HTTP middleware: answers that no :func:`endpoint` served (the OpenAPI document, the
    docs page, the catch-all 404, Chalice's own 405/415) are limited by their source
    address too, and carry the RateLimit-* headers like every other answer. These are all
    reads, so refusing after the view ran changes nothing."""
    response = get_response(event)
    if any(k.lower() == "ratelimit-limit" for k in (response.headers or {})):
        return response
    from crm.billing import ratelimit

    decision = ratelimit.check_anonymous(_source_ip(event))
    if not decision.allowed:
        return problem(
            429,
            "rate_limited",
            f"over {decision.limit} requests per second; retry in {decision.retry_after} s",
            headers=decision.headers(),
            limit=decision.limit,
            retry_after=decision.retry_after,
        )
    response.headers = {**(response.headers or {}), **decision.headers()}
    return response
