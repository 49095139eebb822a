"""The API client: httpx, the agent key as a Bearer token, timeouts, and retries with
exponential backoff and full jitter for 429, 5xx and network errors inside the same run
(a failed upload is retried now, not after the next local write).

What the sync loop is told:
- 401 → :class:`Unauthorized`: the key is unknown or revoked; the agent stops and leaves
  its queue as it is.
- 403/404 → :class:`AccessDenied`: a config error (the key is not this agent's, a wrong URL).
- 422 and other 4xx → :class:`Unprocessable` (an upload batch is then bisected).
- 500 after the retries → :class:`ServerError` (bisected down to the one record).
- 429/502/503/504 or no network after the retries → :class:`Offline`: try again later.

The key is never logged nor put in an exception message.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from rapport_agent import __version__
from rapport_agent import hlc as hlcs

log = logging.getLogger("rapport_agent.client")

TRANSIENT = {429, 502, 503, 504}
RETRIED = TRANSIENT | {500}
MAX_DELAY = 30.0


class ApiError(Exception):
    def __init__(self, message: str, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


class Unauthorized(ApiError):
    """401: the key is unknown or revoked. Stop; keep the queue."""


class AccessDenied(ApiError):
    """403/404: the key may not do this, or the URL is wrong: a config error."""


class Unprocessable(ApiError):
    """422 (or another 4xx that names the request: 400, 409, 413) on the whole request."""


class ServerError(ApiError):
    """500 after every retry: possibly caused by what was sent."""


class Offline(ApiError):
    """The API cannot be reached (network, 429, 502-504) after every retry."""


class Gone(ApiError):
    """410: a change-feed cursor older than the retention period."""


def _message(response: httpx.Response) -> tuple[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200], None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{error.get('code', '')}: {error.get('message', '')}".strip(": "), body
    return str(body)[:200], body


class Client:
    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.5,
        on_hlc: Callable[[str, int], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {key}", "User-Agent": f"rapport-agent/{__version__}"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )
        self.retries = retries
        self.backoff = backoff
        self.on_hlc = on_hlc
        self._sleep = sleep
        self.requests = 0  # sent, retries included (bench and tests count them)

    def close(self) -> None:
        self._http.close()

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None and (after := response.headers.get("Retry-After")):
            try:
                return min(float(after), MAX_DELAY)
            except ValueError:
                pass
        return random.uniform(0, min(MAX_DELAY, self.backoff * 2**attempt))  # full jitter

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                self.requests += 1
                sent = hlcs.wall_ms()
                response = self._http.request(method, path, json=json, params=params)
                # the local wall clock halfway through the exchange: what the server's
                # ``hlc`` (its now) is compared with to learn this machine's clock offset
                midway = (sent + hlcs.wall_ms()) // 2
            except httpx.TransportError as exc:
                failure: ApiError = Offline(f"{method} {path}: {type(exc).__name__}: {exc}")
            else:
                status = response.status_code
                if status < 400:
                    body = response.json() if response.content else None
                    if self.on_hlc and isinstance(body, dict) and isinstance(body.get("hlc"), str):
                        self.on_hlc(body["hlc"], midway)
                    return body
                message, body = _message(response)
                text = f"{method} {path}: HTTP {status} {message}"
                if status == 401:
                    raise Unauthorized(text, status, body)
                if status in (403, 404):
                    raise AccessDenied(text, status, body)
                if status == 410:
                    raise Gone(text, status, body)
                if status not in RETRIED:
                    raise Unprocessable(text, status, body)
                failure = (Offline if status in TRANSIENT else ServerError)(text, status, body)
            if attempt >= self.retries:
                raise failure
            delay = self._delay(attempt, response)
            log.info("%s; retry %d/%d in %.1fs", failure, attempt + 1, self.retries, delay)
            self._sleep(delay)
            attempt += 1

    # --- the agent protocol ------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        return self.request("GET", "/v1/agents/me")

    def heartbeat(self, agent_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", f"/v1/agents/{agent_id}/heartbeat", json=body)

    def upload(self, agent_id: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        return self.request("POST", f"/v1/agents/{agent_id}/uploads", json={"records": records})

    def fetch(self, agent_id: str, customer_ids: list[str]) -> dict[str, Any]:
        return self.request("POST", f"/v1/agents/{agent_id}/fetch", json={"customer_ids": customer_ids})

    def changes(self, cursor: str, limit: int = 100) -> dict[str, Any]:
        return self.request("GET", "/v1/changes", params={"cursor": cursor, "types": "customer.*", "limit": limit})
