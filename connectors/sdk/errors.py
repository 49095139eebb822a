"""Errors a connector raises; the runner and the API turn each into a run status or a 4xx."""
from __future__ import annotations


class VendorError(Exception):
    """The vendor answered with an error that retrying will not fix (4xx, bad JSON)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


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
