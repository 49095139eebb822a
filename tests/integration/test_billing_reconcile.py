"""The reconcile (`rapport billing reconcile`, the daily schedule) and `rapport tenants show`:
a missed webhook never leaves a tenant on the wrong plan."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.integration.test_billing import billing, stored, subscribe
from tests.stripe_helpers import stripe_client


def _cli(*args: str):
    from rapport.cli import app

    result = CliRunner().invoke(app, list(args))
    return result


def test_reconcile_repairs_what_missed_webhooks_left_behind(tenant, stripe_double, table):
    subscribe(tenant, stripe_double)
    assert stored(tenant).plan == "starter"
    stripe_double.webhook_url = None  # Stripe cannot reach Rapport: the deletion is never delivered
    stripe_client(stripe_double.url).v1.subscriptions.cancel(stored(tenant).subscription)
    assert stripe_double.wait_idle(20)
    assert stored(tenant).plan == "starter"  # drift
    undelivered = [e["id"] for e in stripe_double.events() if not e["delivered"]]
    assert undelivered
    result = _cli("billing", "reconcile", "--table", table)
    assert result.exit_code == 0, result.output
    assert f"repaired {tenant.id}: plan starter -> free, status active -> canceled" in result.output
    b = billing(tenant)
    assert (b["plan"], b["status"]) == ("free", "canceled")
    again = _cli("billing", "reconcile", "--json", "--table", table)
    report = json.loads(again.output)
    assert report["repaired"] == [] and report["failed"] == []  # nothing left to repair
    assert not [e for e in report["events_applied"] if e in undelivered]  # applied once, then duplicates


def test_reconcile_applies_undelivered_events_and_the_schedule_runs_it(tenant, stripe_double):
    from functions import billing as handler

    stripe_double.webhook_url = None
    session = tenant.http.post("/v1/billing/checkout", json={"plan": "growth"}).json()
    from tests.stripe_helpers import complete_checkout

    complete_checkout(stripe_client(stripe_double.url), session["session_id"])
    assert stripe_double.wait_idle(20)
    report = handler.run_reconcile()
    assert any(r["tenant"] == tenant.id and r["changes"]["plan"] == ["free", "growth"] for r in report["repaired"])
    assert report["events_applied"]
    assert stored(tenant).plan == "growth"


def test_the_schedule_skips_without_stripe_settings(monkeypatch):
    from functions import billing as handler

    monkeypatch.delenv("RAPPORT_STRIPE_API_KEY", raising=False)
    assert "skipped" in handler.run_reconcile()


def test_tenants_show_prints_plan_status_period_limits_and_usage(tenant, stripe_double, table):
    subscribe(tenant, stripe_double)
    result = _cli("tenants", "show", tenant.id, "--table", table)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Plan: starter" in out and "Status: active" in out and "Period: " in out
    assert "customers" in out and "10000" in out and "requests_per_second" in out
    shown = json.loads(_cli("tenants", "show", tenant.id, "--json", "--table", table).output)
    served = billing(tenant)  # one API call later: api_calls counts that GET too
    assert served["usage"].pop("api_calls") == shown["usage"].pop("api_calls") + 1
    assert {k: v for k, v in shown.items() if k not in ("tenant_id", "name", "tenant_status")} == served
    missing = _cli("tenants", "show", "nosuchtenant", "--table", table)
    assert missing.exit_code == 2
    listed = _cli("tenants", "list", "--table", table)
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if tenant.id in line)
    assert "starter" in row, listed.output  # the billing plan, not the tenant item's old field
