"""The HTTP client every connector uses: httpx with timeouts, retries with exponential
backoff and full jitter, and ``Retry-After``.

A throttle the run can afford to wait out (``Retry-After`` up to ``max_wait`` seconds,
and only while the invocation has time left) is slept through; a longer one raises
:class:`RateLimited`, so the runner checkpoints and the next invocation resumes, instead
of sleeping toward the Lambda timeout.
"""
from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime
from typing import Any, Callable

import httpx

from connectors.sdk.errors import RateLimited, VendorError

RETRYABLE = {500, 502, 503, 504}
THROTTLED = {429}


def retry_after(response: httpx.Response, default: float) -> float:
    """Seconds to wait: ``Retry-After`` as seconds or an HTTP date, else ``default``."""
    value = response.headers.get("retry-after")
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return default


class Client:
    def __init__(self, base_url: str, *, auth: Any = None, headers: dict[str, str] | None = None,
                 params: dict[str, str] | None = None, timeout: float = 20.0, retries: int = 4,
                 backoff: float = 0.5, max_backoff: float = 20.0, max_wait: float = 10.0,
                 time_left: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.http = httpx.Client(base_url=base_url, auth=auth, headers=headers, params=params,
                                 timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)))
        self.retries, self.backoff, self.max_backoff, self.max_wait = retries, backoff, max_backoff, max_wait
        self.time_left = time_left or (lambda: float("inf"))
        self.sleep = sleep
        self.requests = 0  # what the vendor was asked, for run figures
        self.throttled = 0

    def close(self) -> None:
        self.http.close()

    def _pause(self, seconds: float, response: httpx.Response | None) -> None:
        """Sleep if the run can afford it, else hand the wait to the next invocation."""
        if seconds > self.max_wait or seconds + 5 > self.time_left():
            raise RateLimited(seconds)
        self.sleep(seconds)

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** attempt))  # full jitter

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            self.requests += 1
            try:
                response = self.http.request(method, url, **kwargs)
            except (httpx.TransportError,) as exc:
                if attempt >= self.retries:
                    raise VendorError(f"{method} {url}: {exc.__class__.__name__}: {exc}") from exc
                self._pause(self._backoff(attempt), None)
                attempt += 1
                continue
            if response.status_code in THROTTLED:
                self.throttled += 1
                self._pause(retry_after(response, self._backoff(attempt) or 1.0), response)
                continue  # throttling is not a failure: it does not use up retries
            if response.status_code in RETRYABLE and attempt < self.retries:
                wait = retry_after(response, self._backoff(attempt)) if response.status_code == 503 \
                    else self._backoff(attempt)
                self._pause(wait, response)
                attempt += 1
                continue
            if response.status_code >= 400:
                raise VendorError(f"{method} {response.request.url.path} answered "
                                  f"{response.status_code}: {response.text[:300]}",
                                  status=response.status_code)
            return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def get_json(self, url: str, **kwargs: Any) -> tuple[Any, httpx.Response]:
        response = self.get(url, **kwargs)
        try:
            return response.json(), response
        except ValueError as exc:
            raise VendorError(f"GET {url}: the vendor answered with invalid JSON") from exc
