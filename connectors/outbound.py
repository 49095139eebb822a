"""One outbound webhook attempt: POST a signed body to a tenant's endpoint, safely.

crm/ never opens a socket to a URL a tenant typed; this module does, for the endpoint
test (POST /v1/webhooks/endpoints/{id}/test) and the delivery engine. Every attempt goes
through the connectors' :class:`~connectors.sdk.http.GuardedTransport`: outside local
development the host is resolved at send time, every address checked
(common/net.py: no loopback, private, link-local, CGNAT, multicast, ULA or IPv4-mapped
address, in any spelling), and the connection made to the address that was checked, with
the name kept for TLS (SNI) and ``Host`` (a DNS answer that changes after the check
cannot redirect it). Redirects are never followed: a 3xx is a failed attempt. One shared
verifying TLS context (``tls_context()``), 15 s timeout.

The :class:`Attempt` says what happened in words, for a delivery log: the status, the
latency, the first 200 characters of the answer (never the request's headers or
secrets), ``Retry-After`` and, when no answer came, why (timeout, connection refused or
reset, refused by the SSRF guard, TLS).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from connectors.sdk import net
from connectors.sdk.http import Blocked, GuardedTransport, Unresolved, retry_after, tls_context

TIMEOUT = 15.0
EXCERPT_CHARS = 200
READ_AT_MOST = 4096  # bytes of the answer read for the excerpt; the rest is not downloaded
USER_AGENT = "Rapport-Webhooks/1"


@dataclass(frozen=True)
class Attempt:
    status: int | None  # the endpoint's HTTP status; None when no answer came
    latency_ms: int
    excerpt: str  # the first 200 characters of the answer's body
    retry_after: float | None  # the answer's Retry-After, in seconds
    error: str | None  # why the attempt failed, in words (None: an answer came and it is not a redirect)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


_CLIENTS: dict[tuple[str, str, int | None], httpx.Client] = {}
_CLIENTS_LOCK = threading.Lock()
MAX_CLIENTS = 64


def _client(url: str) -> httpx.Client:
    """One client per endpoint origin (scheme, host name, port), reused so a connection
    stays alive between deliveries. Never one pool for all: the guard connects to an
    address, so a shared pool would hand a connection made (and TLS-verified) for one
    name to another name at the same address. The guard runs per request, so the
    local-development setting is read on every send. Thread-safe; at most
    :data:`MAX_CLIENTS`, the oldest dropped first."""
    parts = urlsplit(url)
    key = (parts.scheme, (parts.hostname or "").lower(), parts.port)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            if len(_CLIENTS) >= MAX_CLIENTS:
                _CLIENTS.pop(next(iter(_CLIENTS)))  # not closed: a thread may be sending through it
            client = _CLIENTS[key] = httpx.Client(
                follow_redirects=False,
                transport=GuardedTransport(verify=tls_context()),
                headers={"user-agent": USER_AGENT},
            )
        return client


def _refused_literal(url: str) -> str | None:
    """The guard's answer for a host that is itself an address (or localhost), before any
    socket: some spellings (``0177.0.0.1``) httpx would refuse as an invalid URL instead."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return None
    try:
        net.check_host(host)
    except net.BlockedAddress as exc:
        return f"refused by the SSRF guard: the host {exc}, not a public address"
    return None


def _in_words(exc: Exception, timeout: float) -> str:
    if isinstance(exc, Blocked):
        return f"refused by the SSRF guard: {str(exc).removeprefix('refused to connect: ')}"
    if isinstance(exc, Unresolved):
        return f"DNS: {exc}"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timeout: no connection within {timeout:g} s"
    if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
        return f"timeout: no answer within {timeout:g} s"
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return f"invalid URL: {exc}"
    text = str(exc)
    lowered = text.lower()
    if "ssl" in lowered or "certificate" in lowered or "tls" in lowered:
        return f"TLS: {text}"
    if "refused" in lowered:
        return "connection refused"
    if "reset" in lowered:
        return "connection reset by the endpoint"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"the endpoint broke the HTTP exchange: {text}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def post(url: str, headers: dict[str, str], body: str, timeout: float = TIMEOUT) -> Attempt:
    """POST ``body`` (already signed: ``headers``) to ``url`` once; never raises for what
    the endpoint or the network did."""
    started = time.perf_counter()

    def ms() -> int:
        return int((time.perf_counter() - started) * 1000)

    refused = None if net.local_dev() else _refused_literal(url)
    if refused:
        return Attempt(None, ms(), "", None, refused)
    status: int | None = None
    raw, wait, problem = b"", -1.0, None
    try:
        with _client(url).stream(
            "POST",
            url,
            content=body.encode(),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        ) as response:
            status, wait = response.status_code, retry_after(response, -1.0)
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) >= READ_AT_MOST or ms() > timeout * 1000:
                    break
    except Exception as exc:  # noqa: BLE001 - every failure is an attempt's outcome, in words
        problem = _in_words(exc, timeout)  # with the status when the answer broke off mid-body
    if problem is None and status is not None and 300 <= status < 400:
        problem = f"a redirect ({status}), which is not followed: point the endpoint at the final URL"
    return Attempt(
        status=status,
        latency_ms=ms(),
        excerpt=raw.decode("utf-8", errors="replace")[:EXCERPT_CHARS],
        retry_after=None if wait < 0 else wait,
        error=problem,
    )
