"""Domain errors, free of HTTP. The API maps each class to an RFC 9457 problem with the
same ``code`` (api/problems.py)."""

from __future__ import annotations

from typing import Any

# ``field`` of an error about the version a write expected (the API names the header
# that carried it: If-Match)
EXPECTED_VERSION = "expected_version"


class DomainError(Exception):
    """Base class. ``code`` is stable (clients branch on it); how it travels (an HTTP
    status, a header) is the API's business: api/problems.py maps each class."""

    code = "bad_request"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra


class NotFound(DomainError):
    code = "not_found"


class Gone(DomainError):
    code = "erased"


class Conflict(DomainError):
    code = "conflict"


class PreconditionFailed(DomainError):
    code = "precondition_failed"


def stale_version(if_match: int, current: int | None) -> PreconditionFailed:
    """The one answer to an If-Match that lost: clients re-read ``current_version``."""
    return PreconditionFailed(
        f"If-Match {if_match} does not match the current version {current}",
        field=EXPECTED_VERSION,
        current_version=current,
    )


class Invalid(DomainError):
    code = "validation_error"


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class Unavailable(DomainError):
    code = "not_ready"


class PaymentRequired(DomainError):
    """The plan does not allow it (``code`` plan_limit / feature_not_in_plan, naming the
    limit, the usage and the plan that allows more), or the subscription is past due
    beyond its grace period (``payment_required``)."""

    code = "payment_required"


class RateLimited(DomainError):
    """Over the plan's requests per second; ``retry_after`` in seconds."""

    code = "rate_limited"


def field_errors(exc: Any) -> list[dict[str, str]]:
    """A pydantic ValidationError as ``[{"field": "a.b", "message", "type"}]``."""
    from crm.plain_errors import plain_message

    return [
        {"field": ".".join(str(p) for p in e["loc"]), "message": plain_message(e), "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
