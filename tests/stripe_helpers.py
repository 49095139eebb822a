"""The Stripe double for tests (rapport/stripe_double.py): the ``stripe_double`` fixture (a
started double delivering to the test API's webhook route, with the app's RAPPORT_STRIPE_*
settings pointing at it), a client of the official ``stripe`` library for it, and a tiny
webhook receiver for testing delivery itself."""
from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TEST_KEY = "sk_test_rapport_double"
ENV = ("RAPPORT_STRIPE_API_KEY", "RAPPORT_STRIPE_API_BASE", "RAPPORT_STRIPE_WEBHOOK_SECRETS")


def stripe_client(url: str, key: str = TEST_KEY):
    """The official library against the double, as crm/billing/stripe_api.py builds it."""
    import stripe

    from crm.billing.stripe_api import API_VERSION

    return stripe.StripeClient(key, stripe_version=API_VERSION, base_addresses={"api": url},
                               max_network_retries=0)


def complete_checkout(client, session_id: str):
    """``POST /v1/test_helpers/checkout/sessions/{id}/complete``: pay as if with a test card."""
    return client.deserialize(client.raw_request("post", f"/v1/test_helpers/checkout/sessions/{session_id}/complete"),
                              api_mode="V1")


def post_helper(client, path: str, **params):
    """Any ``/v1/test_helpers/...`` (or other raw) POST, deserialized."""
    return client.deserialize(client.raw_request("post", path, **params), api_mode="V1")


@pytest.fixture()
def stripe_double(api_url: str):
    """A started Stripe double whose webhook_url is the test API's ``/v1/billing/stripe/webhook``,
    with the app's three RAPPORT_STRIPE_* settings pointing at it (restored after the test)."""
    from rapport.stripe_double import StripeDouble

    double = StripeDouble(f"{api_url}/v1/billing/stripe/webhook")
    url = double.start()
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update({"RAPPORT_STRIPE_API_KEY": TEST_KEY, "RAPPORT_STRIPE_API_BASE": url,
                       "RAPPORT_STRIPE_WEBHOOK_SECRETS": double.webhook_secret})
    try:
        yield double
    finally:
        double.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class WebhookReceiver:
    """A local HTTP endpoint recording each POST (raw body and headers). ``statuses[type]``:
    answers for the deliveries of events of that type, in turn (then 200), to make a delivery
    fail and be retried."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    kind = json.loads(body).get("type")
                except ValueError:
                    kind = None
                with receiver._lock:
                    queued = receiver.statuses.get(kind) or []
                    status = queued.pop(0) if queued else 200
                    receiver.requests.append({"body": body, "headers": dict(self.headers), "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhook"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def events(self) -> list[dict]:
        """The event bodies received, in arrival order (duplicates and retries included)."""
        with self._lock:
            return [json.loads(r["body"]) for r in self.requests]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
