"""Errors a connector raises; the runner and the API turn each into a run status or a 4xx."""

from __future__ import annotations

ErrorCode = str  # auth | config | rate_limited | vendor | stalled | internal


class VendorError(Exception):
    """The vendor answered with an error that retrying will not fix (4xx, bad JSON), or
    could not be reached. ``kind`` classifies it for the run (``auth``: the credentials
    were refused; ``config``: bad URL, DNS, TLS, a blocked address, a wrong path;
    ``vendor``: the vendor failed). ``vendor_body`` keeps the start of the vendor's answer
    for a connector's own decisions; it is never shown (it may be anything)."""

    def __init__(
        self, message: str, *, status: int | None = None, kind: str | None = None, vendor_body: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.vendor_body = vendor_body
        self.kind = kind or ("auth" if status in (401, 403) else "config" if status == 404 else "vendor")


class CheckFailed(VendorError):
    """``check(config)`` could not reach the vendor or the credentials were refused."""


class RateLimited(Exception):
    """The vendor throttled us for longer than a run may sleep: checkpoint and resume
    after ``retry_after`` seconds, on the next invocation, instead of idling toward the
    Lambda timeout."""

    def __init__(self, retry_after: float, message: str = "rate limited by the vendor") -> None:
        super().__init__(f"{message}; retry after {retry_after:.0f} s")
        self.retry_after = retry_after


class WebhookRejected(Exception):
    """A push delivery failed verification (missing or forged signature): 401, nothing parsed."""


def check_error(exc: VendorError) -> VendorError:
    """The error a failed ``check`` is classified by: a connector may wrap the client's
    error without its status (``raise CheckFailed("...") from exc``); then the cause, which
    has it. ``POST /v1/connections/{id}/check`` answers with its ``kind`` and ``status``."""
    cause = exc.__cause__
    return cause if exc.status is None and isinstance(cause, VendorError) else exc
