"""The HTTP client every connector uses: httpx with timeouts, retries with exponential
backoff and full jitter, and ``Retry-After``.

A throttle the run can afford to wait out (``Retry-After`` up to ``max_wait`` seconds,
and only while the invocation has time left) is slept through; a longer one raises
:class:`RateLimited`, so the runner checkpoints and the next invocation resumes, instead
of sleeping toward the Lambda timeout.

Every connection goes through :class:`GuardedTransport`: outside local development the
vendor's host is resolved, every address checked (connectors/sdk/net.py) and the checked
address connected to, with the name kept for TLS and ``Host``. Redirects are never
followed (a 3xx is an error), and an error names the vendor's status, never its body.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from connectors.sdk import net
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


_TLS: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """The verifying TLS context every client shares: building one loads the CA bundle
    (about 60 ms of CPU), and a webhook's re-read or a connection check builds a client
    each time. A context is safe to share; the server name is set per connection."""
    global _TLS
    if _TLS is None:
        _TLS = httpx.create_ssl_context()
    return _TLS


class Blocked(httpx.ConnectError):
    """The vendor's host is, or resolves to, an address of our own network."""


class Unresolved(httpx.ConnectError):
    """The vendor's host name does not resolve."""


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport, connecting only to public addresses (unless in local development)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not net.local_dev():
            host = request.url.host
            port = request.url.port or (443 if request.url.scheme == "https" else 80)
            try:
                address = net.resolve(host, port)
            except net.BlockedAddress as exc:
                raise Blocked(f"refused to connect: {exc}", request=request) from None
            except OSError as exc:
                raise Unresolved(str(exc), request=request) from None
            if address != host:
                request.extensions = {**request.extensions, "sni_hostname": host}
                request.url = request.url.copy_with(host=address)
        return super().handle_request(request)


def _transport_kind(exc: httpx.TransportError) -> str:
    """``config`` for what the tenant must fix (name, address, TLS), else ``vendor``."""
    if isinstance(exc, (Blocked, Unresolved)):
        return "config"
    text = str(exc).lower()
    if any(w in text for w in ("ssl", "certificate", "name or service", "nodename", "getaddrinfo")):
        return "config"
    return "vendor"


class Client:
    def __init__(
        self,
        base_url: str,
        *,
        auth: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        timeout: float = 20.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        max_wait: float = 10.0,
        time_left: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http = httpx.Client(
            base_url=base_url,
            auth=auth,
            headers=headers,
            params=params,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=False,
            transport=GuardedTransport(verify=tls_context()),
        )
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
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))  # full jitter

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            self.requests += 1
            try:
                response = self.http.request(method, url, **kwargs)
            except httpx.InvalidURL as exc:
                raise VendorError(f"{method} {url}: the URL is not valid ({exc})", kind="config") from None
            except httpx.TransportError as exc:
                kind = _transport_kind(exc)
                if attempt >= self.retries or isinstance(exc, Blocked):
                    raise VendorError(f"{method} {url}: {exc.__class__.__name__}: {exc}", kind=kind) from None
                self._pause(self._backoff(attempt), None)
                attempt += 1
                continue
            if response.status_code in THROTTLED:
                self.throttled += 1
                self._pause(retry_after(response, self._backoff(attempt) or 1.0), response)
                continue  # throttling is not a failure: it does not use up retries
            if response.status_code in RETRYABLE and attempt < self.retries:
                wait = (
                    retry_after(response, self._backoff(attempt))
                    if response.status_code == 503
                    else self._backoff(attempt)
                )
                self._pause(wait, response)
                attempt += 1
                continue
            if response.status_code >= 300:
                # the vendor's status, never its body: a URL pointed at something else
                # must not have its answer shown back (SSRF); connectors may read vendor_body
                note = " (a redirect, which is not followed: check the URL)" if response.status_code < 400 else ""
                raise VendorError(
                    f"{method} {response.request.url.path} answered {response.status_code}{note}",
                    status=response.status_code,
                    kind="config" if response.status_code < 400 else None,
                    vendor_body=response.text[:300],
                )
            return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def get_json(self, url: str, **kwargs: Any) -> tuple[Any, httpx.Response]:
        response = self.get(url, **kwargs)
        try:
            return response.json(), response
        except ValueError as exc:
            raise VendorError(f"GET {url}: the vendor answered with invalid JSON") from exc
