"""RFC 9457 problem details: every error the API returns has this shape."""

from __future__ import annotations

import json
from typing import Any

from chalice import Response

from crm import errors

PROBLEM_TYPE = "https://rapport.dev/problems/"
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation failed",
    428: "Precondition required",
    429: "Too many requests",
    500: "Internal server error",
}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(
        body=json.dumps(body),
        status_code=status,
        headers={"Content-Type": "application/problem+json", **(headers or {})},
    )


# the HTTP status of each domain error class (crm/errors.py knows only codes)
STATUS: dict[type[errors.DomainError], int] = {
    errors.DomainError: 400,
    errors.NotFound: 404,
    errors.Gone: 410,
    errors.Conflict: 409,
    errors.PreconditionFailed: 412,
    errors.Invalid: 422,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.Unavailable: 503,
    errors.PaymentRequired: 402,
    errors.RateLimited: 429,
}


def status_of(err: errors.DomainError) -> int:
    """The status of the error's class, or of its nearest mapped base class."""
    return next(STATUS[cls] for cls in type(err).__mro__ if cls in STATUS)


AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="rapport"'}  # with every 401 (RFC 9110)


# the request header that carries what a domain field stands for
HEADER_FIELDS = {errors.EXPECTED_VERSION: "If-Match"}


def from_domain(err: errors.DomainError) -> Response:
    extra = dict(err.extra)
    code = extra.pop("code", err.code)
    status = status_of(err)
    field = HEADER_FIELDS.get(err.field, err.field) if err.field else None
    return problem(status, code, err.detail, field=field, headers=AUTHENTICATE if status == 401 else None, **extra)


def from_validation(exc: Any, *, where: str) -> Response:
    """A pydantic ValidationError: 422 naming the first field, all errors listed, in
    plain words ("unknown field 'q'") rather than the validation library's."""
    found = errors.field_errors(exc)
    first = found[0] if found else {"field": None, "message": "invalid", "type": ""}
    detail = (
        f"invalid {where}: {first['message']}"
        if first["type"] == "extra_forbidden"
        else f"invalid {where}: {first['field']}: {first['message']}"
    )
    return problem(422, "validation_error", detail, field=first["field"], errors=found)


_CHALICE_ERRORS = {
    405: ("method_not_allowed", "this route does not accept {method}"),
    415: ("unsupported_media_type", "send the body as JSON with Content-Type: application/json"),
}


def chalice_errors_as_problems(event: Any, get_response: Any) -> Response:
    """HTTP middleware: the 405 and 415 that Chalice's router answers before any view
    runs become problem details too, so every error has one shape."""
    response = get_response(event)
    mapped = _CHALICE_ERRORS.get(response.status_code)
    if mapped and isinstance(response.body, dict) and "Code" in response.body:
        code, detail = mapped
        headers = {k: v for k, v in response.headers.items() if k.lower() == "allow"}
        return problem(response.status_code, code, detail.format(method=event.method), headers=headers)
    return response
