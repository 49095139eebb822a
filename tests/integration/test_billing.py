"""Billing over HTTP: GET /v1/billing, checkout, the portal and Stripe's signed webhooks,
with the official stripe library against the Stripe double (tests/stripe_helpers.py)."""
from __future__ import annotations

import json
import time

import pytest

from tests.conftest import Tenant, partition_items
from tests.stripe_helpers import complete_checkout, post_helper, stripe_client, stripe_double  # noqa: F401

WEBHOOK = "/v1/billing/stripe/webhook"


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def billing(t: Tenant) -> dict:
    r = t.http.get("/v1/billing")
    assert r.status_code == 200, r.text
    return r.json()


def checkout(t: Tenant, plan="starter", expect=201) -> dict:
    r = t.http.post("/v1/billing/checkout", json={"plan": plan})
    assert r.status_code == expect, r.text
    return r.json()


def subscribe(t: Tenant, double, plan="starter") -> dict:
    """Checkout + pay; waits until every event is answered."""
    session = checkout(t, plan)
    complete_checkout(stripe_client(double.url), session["session_id"])
    assert double.wait_idle(20)
    return session


def test_a_new_tenant_is_on_free(tenant, stripe_double):
    b = billing(tenant)
    assert (b["plan"], b["status"], b["grace_until"]) == ("free", "free", None)
    assert b["limits"] == {"customers": 500, "connections": 1, "emails_per_month": 1000, "requests_per_second": 10}
    assert b["features"] == [] and b["checkout"] is None


def test_upgrade_free_to_starter_through_checkout(tenant, stripe_double):
    session = checkout(tenant)
    assert session["url"].startswith("http") and session["session_id"].startswith("cs_")
    stripe = stripe_client(stripe_double.url)
    created = stripe.v1.checkout.sessions.retrieve(session["session_id"])
    assert created.client_reference_id == tenant.id and created.mode == "subscription"
    assert billing(tenant)["checkout"]["session_id"] == session["session_id"]
    complete_checkout(stripe, session["session_id"])
    assert stripe_double.wait_idle(20)
    b = billing(tenant)
    assert (b["plan"], b["status"]) == ("starter", "active"), b
    assert b["limits"]["customers"] == 10_000 and b["current_period"]["end"] > b["current_period"]["start"]
    sub = stripe.v1.subscriptions.retrieve(b["subscription"])
    assert sub.metadata["tenant_id"] == tenant.id
    assert b["checkout"] is None
    assert all(e["delivered"] for e in stripe_double.events())
