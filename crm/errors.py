"""Domain errors. The API maps each to an RFC 9457 problem with the same ``code``."""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class: ``status`` is the HTTP status the API answers with."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra


class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not found"


class Gone(DomainError):
    status, code, title = 410, "erased", "Resource erased"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class PreconditionFailed(DomainError):
    status, code, title = 412, "precondition_failed", "Precondition failed"


class Invalid(DomainError):
    status, code, title = 422, "validation_error", "Validation failed"


class Unauthorized(DomainError):
    status, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Forbidden"


class Unavailable(DomainError):
    status, code, title = 503, "not_ready", "Service unavailable"


def field_errors(exc: Any) -> list[dict[str, str]]:
    """A pydantic ValidationError as ``[{"field": "a.b", "message", "type"}]``."""
    from crm.plain_errors import plain_message

    return [{"field": ".".join(str(p) for p in e["loc"]), "message": plain_message(e), "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)]
