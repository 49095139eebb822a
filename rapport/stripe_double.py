"""A Stripe API double on loopback, so billing runs locally and in tests without a Stripe
account: the official ``stripe`` library talks to it through ``base_addresses={"api": url}``
(rapport/stripe_double_api.py serves the resources), and each event it creates is signed
and delivered to ``webhook_url`` as Stripe would (rapport/stripe_double_delivery.py), in an
order a test can choose.

Python control API (tests run the double in-process): ``hold()``, ``release(order)``,
``events()``, ``redeliver(event_id)``, ``meter_events()``, ``wait_idle(timeout)``. The same
controls over HTTP under ``/_double/`` (for ``rapport dev`` and end-to-end tests)."""

from __future__ import annotations

import base64
import json
import random
import secrets
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

from rapport import stripe_double_objects as obj
from rapport.stripe_double_api import ApiError, StripeApi
from rapport.stripe_double_delivery import Deliveries
from rapport.stripe_double_forms import FormError, parse

DEFAULT_RETRY_DELAYS = (0.2, 0.5, 1, 2, 4)


class StripeDouble:
    def __init__(self, webhook_url: str | None = None, *, secret: str | None = None,
                 retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS) -> None:
        self.webhook_url = webhook_url
        self.webhook_secret = secret or f"whsec_{secrets.token_urlsafe(24)}"
        self.url: str | None = None
        self._lock = threading.RLock()
        self._deliveries = Deliveries(self.webhook_secret, retry_delays, lambda: self.webhook_url)
        self.api = StripeApi(lambda: self.url or "", self._emit, self._lock)
        self.api.events = self._event_views  # type: ignore[method-assign]
        self._routes = self.api.routes()
        self._idempotent: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> str:
        """Listen on a free loopback port; returns the base URL (the library's ``api`` address)."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="stripe-double",
                         daemon=True).start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._deliveries.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control API ---------------------------------------------------------------------
    def hold(self) -> None:
        """Queue new events without delivering them, until ``release``."""
        self._deliveries.hold()

    def release(self, order: None | str | Sequence[str] | random.Random = None) -> list[str]:
        """Deliver the held events in ``order`` (None: creation order, "reverse", a list of
        event ids, or a ``random.Random``), each answered before the next; ends the hold."""
        return self._deliveries.release(order)

    def events(self) -> list[dict]:
        """Every event, oldest first, each with ``delivered`` and its delivery ``attempts``."""
        return self._event_views()

    def redeliver(self, event_id: str) -> dict:
        """Deliver an event once more (a duplicate); returns the attempt."""
        return self._deliveries.redeliver(event_id)

    def meter_events(self) -> list[dict]:
        """The billing meter events accepted (a refused duplicate is not among them)."""
        with self._lock:
            return json.loads(json.dumps(self.api.meter_events))

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once every delivery queued has been answered (or has used up its retries)."""
        return self._deliveries.wait_idle(timeout)

    def held(self) -> bool:
        return self._deliveries.holding

    # -- events --------------------------------------------------------------------------
    def _emit(self, type_: str, data: dict, previous: dict | None) -> dict:
        with self._lock:
            event = obj.event(int(time.time()), type_, data, previous)
            body = json.dumps(event, indent=2).encode()
            self._deliveries.add(event, body)
            return event

    def _event_views(self) -> list[dict]:
        return self._deliveries.views()

    # -- HTTP ----------------------------------------------------------------------------
    def handle_api(self, method: str, path: str, query: str, body: bytes, headers: Any) -> tuple[int, dict, dict]:
        """One Stripe API request: (status, JSON body, extra headers)."""
        try:
            self._authorize(headers.get("Authorization"))
            params = parse(query) if method in ("GET", "DELETE") else parse(body.decode("utf-8"))
            if method == "DELETE" and body:
                params.update(parse(body.decode("utf-8")))
            for m, pattern, fn in self._routes:
                match = pattern.match(path)
                if match and m == method:
                    with self._lock:
                        return 200, self.api.expand(fn(params, **match.groupdict()), params), {}
            if any(pattern.match(path) for _, pattern, _ in self._routes):
                raise ApiError(405, f"Unrecognized request URL ({method}: {path}).")
            raise ApiError(404, f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
                                "or we can help at https://support.stripe.com/.")
        except FormError as exc:
            return 400, obj.error("invalid_request_error", str(exc), "parameter_unknown", exc.param), {}
        except ApiError as exc:
            return exc.status, exc.body, exc.headers

    @staticmethod
    def _authorize(header: str | None) -> None:
        """Any test secret key (``sk_test_…``), as Bearer or as curl's Basic user; the key is
        never echoed back."""
        key = None
        if header and header.startswith("Bearer "):
            key = header[7:].strip()
        elif header and header.startswith("Basic "):
            try:
                key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
            except (ValueError, UnicodeDecodeError):
                key = None
        if not key:
            raise ApiError(401, "You did not provide an API key. You need to provide your API key in the "
                                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
        if not key.startswith("sk_test_"):
            raise ApiError(401, "Invalid API Key provided: the Stripe double accepts test secret keys (sk_test_…) only.")

    def handle_control(self, method: str, path: str, body: bytes, query: str) -> tuple[int, Any]:
        """``/_double/…``: the control API over HTTP (loopback only, no key)."""
        try:
            args = json.loads(body) if body.strip() else {}
        except ValueError:
            args = None
        if not isinstance(args, dict):
            return 400, obj.error("invalid_request_error", "The body must be a JSON object.")
        args.update({k: v for k, v in parse(query).items() if k not in args})
        route = path.removeprefix("/_double").rstrip("/") or "/"
        if method == "GET" and route == "/":
            return 200, {"url": self.url, "webhook_url": self.webhook_url, "held": self.held()}
        if method == "GET" and route == "/events":
            return 200, {"data": self.events()}
        if method == "GET" and route == "/meter_events":
            return 200, {"data": self.meter_events()}
        if method == "POST" and route == "/hold":
            self.hold()
            return 200, {"held": True}
        if method == "POST" and route == "/release":
            order = args.get("order")
            if "seed" in args:
                order = random.Random(args["seed"])
            try:
                return 200, {"delivered": self.release(order)}
            except (KeyError, ValueError) as exc:
                return 400, obj.error("invalid_request_error", str(exc).strip("'\""), None, "order")
        if method == "POST" and route.startswith("/redeliver/"):
            event_id = route.removeprefix("/redeliver/")
            if event_id not in self._deliveries.records:
                return 404, obj.error("invalid_request_error", f"No such event: '{event_id}'", "resource_missing", "id")
            return 200, self.redeliver(event_id)
        if method == "POST" and route == "/wait_idle":
            return 200, {"idle": self.wait_idle(float(args.get("timeout", 30)))}
        if method == "POST" and route == "/webhook_url":
            self.webhook_url = args.get("url") or None
            return 200, {"webhook_url": self.webhook_url}
        return 404, obj.error("invalid_request_error", f"Unrecognized control URL ({method}: {path}).")

    def checkout_page(self, method: str, session_id: str) -> tuple[int, str, str | None]:
        """The hosted Checkout page stand-in: GET shows the plan and a Pay button; POST pays
        (``complete``) and redirects to the session's success_url."""
        with self._lock:
            cs = self.api.sessions.get(session_id)
            if cs is None:
                return 404, "<h1>No such Checkout Session</h1>", None
            if method == "POST":
                if cs["status"] == "open":
                    self.api.complete_session({}, session_id)
                target = (cs["success_url"] or "").replace("{CHECKOUT_SESSION_ID}", session_id)
                return 303, "", target or None
            price = self.api.prices[self.api.session_extra[session_id]["price"]]
        amount = f"{price['unit_amount'] / 100:.2f} {price['currency'].upper()}"
        html = (f"<!doctype html><title>Stripe double: Checkout</title><h1>Rapport {price['nickname']}</h1>"
                f"<p>{amount} per month (test mode, Stripe double). Status: {cs['status']}.</p>"
                f"<form method=post><button>Pay with a test card</button></form>")
        return 200, html, None


def _handler(double: StripeDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if url.path.startswith("/_double"):
                status, payload = double.handle_control(self.command, url.path, body, url.query)
                return self._json(status, payload, {})
            if url.path.startswith("/checkout/") and self.command in ("GET", "POST"):
                status, html, location = double.checkout_page(self.command, url.path.removeprefix("/checkout/"))
                return self._send(status, html.encode(), "text/html; charset=utf-8",
                                  {"Location": location} if location else {})
            key = self.headers.get("Idempotency-Key")
            if self.command == "POST" and key:
                cached = double._idempotent.get((key, url.path))
                if cached:
                    return self._send(cached[0], cached[1], "application/json", {"Idempotent-Replayed": "true"})
            status, payload, headers = double.handle_api(self.command, url.path, url.query, body, self.headers)
            raw = json.dumps(payload, indent=2).encode()
            if self.command == "POST" and key and status < 500:
                double._idempotent[(key, url.path)] = (status, raw)
            self._send(status, raw, "application/json", headers)

        def _json(self, status: int, payload: Any, headers: dict) -> None:
            self._send(status, json.dumps(payload, indent=2).encode(), "application/json", headers)

        def _send(self, status: int, raw: bytes, ctype: str, headers: dict) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("Request-Id", obj.new_id("req", 14))
            self.send_header("Stripe-Version", obj.API_VERSION)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def _safe_dispatch(self) -> None:
            try:
                self._dispatch()
            except Exception as exc:  # noqa: BLE001 - a bug in the double: answer as Stripe would, never hang
                self._json(500, obj.error("api_error", f"The Stripe double failed: {type(exc).__name__}: {exc}"), {})

        do_GET = do_POST = do_DELETE = _safe_dispatch

    return Handler
