"""Odoo's two external APIs behind one call: JSON-2 (Odoo 19+) and JSON-RPC (Odoo 17–18).

- **JSON-2**: ``POST /json/2/<model>/<method>`` with the method's arguments as named keys
  of a JSON object (``ids`` for record methods), ``Authorization: bearer <api key>`` and
  ``X-Odoo-Database``. Errors are real HTTP statuses with a JSON body
  ``{"name": "<python exception>", "message": …, "arguments": […], "context": {}, "debug": …}``
  (401 ``werkzeug.exceptions.Unauthorized`` "Invalid apikey"; 403 ``AccessError`` /
  ``AccessDenied``; 404 for an unknown model or method, and for every path when the
  database cannot be opened; 422 for bad arguments).
- **JSON-RPC**: ``POST /jsonrpc`` with ``{"jsonrpc": "2.0", "method": "call", "params":
  {"service": …, "method": …, "args": […]}, "id": n}``. ``common.version()`` needs no
  database; ``common.authenticate(db, login, api_key, {})`` answers the user id, or
  ``false`` when the login or key is refused; then every call is
  ``object.execute_kw(db, uid, api_key, model, method, args, kwargs)``. Errors come back
  with HTTP 200 as ``{"error": {"code": 200, "message": "Odoo Server Error", "data":
  {"name", "message", "arguments", "context", "debug"}}}``; a database that does not exist
  is a ``psycopg2.OperationalError`` ("database … does not exist").

Which one the server speaks is found once per client (one run): a JSON-2 call first; a
404 there asks ``common.version`` over JSON-RPC: a 17 or 18 server speaks JSON-RPC, a 19+
server has JSON-2, so its 404 means the database name matched no database.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from connectors.sdk.errors import VendorError
from connectors.sdk.http import Client

Api = Literal["json2", "jsonrpc"]
JSON2_SINCE = 19  # the first major version with /json/2

# Odoo Online answers calls from a database whose plan has no external API access (One
# App Free, Standard) with an access error that names the plan; the words it uses are
# matched, since its exact wording lives in Odoo's non-public SaaS code (docs/connectors.md)
_PLAN = re.compile(
    r"\b(pricing plan|custom plan|standard plan|one app free|subscription|external api)\b", re.IGNORECASE
)
_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_MESSAGE = re.compile(r'"message"\s*:\s*"((?:[^"\\]|\\.)*)"')


class OdooError(VendorError):
    """An error Odoo answered, with its exception ``name`` and ``message`` (never the debug
    traceback). ``reason`` is what the connector acts on: ``auth`` (key or login refused),
    ``plan`` (no external API on the database's plan), ``database`` (no such database),
    ``missing`` (no such model, method or field: an app is not installed), else ``other``."""

    def __init__(
        self,
        message: str,
        *,
        name: str = "",
        odoo_message: str = "",
        reason: str = "other",
        status: int | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message, status=status, kind=kind)
        self.name, self.odoo_message, self.reason = name, odoo_message, reason


def _unescape(text: str) -> str:
    try:
        return str(json.loads(f'"{text}"'))
    except ValueError:
        return text


def error_fields(body: Any) -> tuple[str, str]:
    """``(name, message)`` of an Odoo error object, or of the start of one (the SDK keeps
    300 characters of an error body, which may cut the JSON before its end)."""
    if isinstance(body, dict):
        return str(body.get("name") or ""), str(body.get("message") or "")
    text = str(body or "")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return error_fields(parsed)
    name, message = _NAME.search(text), _MESSAGE.search(text)
    return (_unescape(name.group(1)) if name else "", _unescape(message.group(1)) if message else "")


def classify(name: str, message: str, status: int | None = None) -> str:
    """The reason behind an Odoo error (see :class:`OdooError`)."""
    short = name.rsplit(".", 1)[-1]
    if _PLAN.search(message) and short in ("AccessDenied", "AccessError", "Forbidden", "Unauthorized", ""):
        return "plan"
    if short in ("AccessDenied", "Unauthorized") or status == 401:
        return "auth"
    if short == "OperationalError" and "does not exist" in message:
        return "database"
    if status == 404 or short in ("NotFound", "KeyError", "AttributeError") or "Invalid field" in message:
        return "missing"
    return "other"


_KIND = {"auth": "auth", "plan": "config", "database": "config", "missing": "config"}


def odoo_error(what: str, name: str, message: str, status: int | None = None) -> OdooError:
    reason = classify(name, message, status)
    shown = message.splitlines()[0][:200] if message else (name or f"status {status}")
    return OdooError(
        f"{what}: Odoo answered {name or status}: {shown}",
        name=name,
        odoo_message=message,
        reason=reason,
        status=status,
        kind=_KIND.get(reason),
    )


class OdooClient(Client):
    """The SDK client (retries, backoff, ``Retry-After``, guarded connections) plus
    :meth:`call`, which speaks whichever API the server has. The runner sets attributes
    such as ``time_left`` and ``sleep`` on it like on any client."""

    def __init__(
        self,
        base_url: str,
        *,
        database: str,
        api_key: str,
        username: str | None = None,
        api: Api | None = None,
        **options: Any,
    ) -> None:
        headers = {
            "Authorization": f"bearer {api_key}",
            "X-Odoo-Database": database,
            "Accept": "application/json",
            "User-Agent": "Rapport-connector/1.0 (odoo)",
        }
        super().__init__(base_url, headers=headers, **options)
        self.database, self.username = database, username
        self._api_key = api_key
        self.api: Api | None = api  # found on first use, then kept for the client's life (one run)
        self.uid: int | None = None
        self.version: str | None = None
        self._rpc_id = 0
        self.cache: dict[str, Any] = {}  # what a run reads once (the company currency)

    # detection ---------------------------------------------------------------------------
    def detect(self) -> Api:
        """Which API the server speaks (once per client): a JSON-2 ``res.users.context_get``
        (1 request, which also proves the key), else JSON-RPC ``common.version`` and
        ``common.authenticate`` (2 requests)."""
        if self.api is not None:
            if self.api == "jsonrpc" and self.uid is None:
                self._authenticate()
            return self.api
        try:
            self._json2("res.users", "context_get", {})
        except OdooError as exc:
            if exc.status != 404:
                raise
            major = self._server_major()
            if major is None:
                raise OdooError(
                    "neither /json/2 nor /jsonrpc answered like Odoo (404): check base_url",
                    reason="missing",
                    status=404,
                    kind="config",
                ) from None
            if major >= JSON2_SINCE:
                raise OdooError(
                    f"Odoo {self.version} found no database {self.database!r} (JSON-2 answered 404): check "
                    "the database name (Settings › Activate the developer mode shows it; on Odoo Online "
                    "it is the name in <name>.odoo.com)",
                    reason="database",
                    status=404,
                    kind="config",
                ) from None
            self.api = "jsonrpc"
            self._authenticate()
            return self.api
        self.api = "json2"
        return self.api

    def _server_major(self) -> int | None:
        try:
            info = self._rpc("common", "version", [])
        except VendorError:
            return None
        version = info.get("server_version_info") if isinstance(info, dict) else None
        if not isinstance(version, list) or not version or not isinstance(version[0], int):
            return None
        self.version = str(info.get("server_serie") or info.get("server_version") or version[0])
        return version[0]

    def _authenticate(self) -> None:
        if not self.username:
            raise OdooError(
                f"this Odoo ({self.version or 'before 19'}) has no JSON-2 API, only JSON-RPC, which needs the "
                "login of the API key's user: set username in the connection's config",
                reason="auth",
                kind="config",
            )
        uid = self._rpc("common", "authenticate", [self.database, self.username, self._api_key, {}])
        if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
            raise OdooError(
                "Odoo refused the username and API key (common.authenticate answered false)",
                reason="auth",
                status=401,
                kind="auth",
            )
        self.uid = uid

    # calls -------------------------------------------------------------------------------
    def call(self, model: str, method: str, *, ids: list[int] | None = None, **kwargs: Any) -> Any:
        """``model.method(**kwargs)`` (on ``ids`` for a record method) over the detected API."""
        api = self.detect()
        if api == "json2":
            body = dict(kwargs)
            if ids is not None:
                body["ids"] = ids
            return self._json2(model, method, body)
        args: list[Any] = [ids] if ids is not None else []
        return self._rpc("object", "execute_kw", [self.database, self.uid, self._api_key, model, method, args, kwargs])

    def _json2(self, model: str, method: str, body: dict[str, Any]) -> Any:
        what = f"{model}.{method}"
        try:
            response = self.request("POST", f"/json/2/{model}/{method}", json=body)
        except VendorError as exc:
            if exc.status is None:
                raise
            name, message = error_fields(exc.vendor_body)
            raise odoo_error(what, name, message, exc.status) from None
        try:
            return response.json()
        except ValueError:
            raise VendorError(f"{what}: Odoo answered invalid JSON") from None

    def _rpc(self, service: str, method: str, args: list[Any]) -> Any:
        self._rpc_id += 1
        what = f"{args[3]}.{args[4]}" if service == "object" else f"{service}.{method}"
        payload = {
            "jsonrpc": "2.0",
            "method": "call",
            "id": self._rpc_id,
            "params": {"service": service, "method": method, "args": args},
        }
        try:
            response = self.request("POST", "/jsonrpc", json=payload)
        except VendorError as exc:
            if exc.status is None:
                raise
            name, message = error_fields(_rpc_error_data(exc.vendor_body))
            raise odoo_error(what, name, message, exc.status) from None
        try:
            body = response.json()
        except ValueError:
            raise VendorError(f"{what}: Odoo answered invalid JSON") from None
        if not isinstance(body, dict):
            raise VendorError(f"{what}: Odoo did not answer a JSON-RPC response")
        if "error" in body:
            error = body["error"] if isinstance(body["error"], dict) else {}
            data = error.get("data") if isinstance(error.get("data"), dict) else {}
            name, message = error_fields(data)
            status = 404 if error.get("code") == 404 else None
            raise odoo_error(what, name, message or str(error.get("message") or ""), status)
        return body.get("result")


def _rpc_error_data(text: str) -> Any:
    """The ``error.data`` of a JSON-RPC error body (an HTTP error status may carry one)."""
    try:
        body = json.loads(text)
    except ValueError:
        return text
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("data") if isinstance(error, dict) and isinstance(error.get("data"), dict) else text
