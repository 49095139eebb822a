"""The per-recipient decision of the exactly-once sender (crm/email/sending.py decide):
send, skip, defer, wait, done; and the SQS delay chain."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm import clock
from crm.email.sending import Facts, decide, delay_until

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ok(**over) -> Facts:
    base = dict(customer_id="cus_1", profile_status="active", email="a@example.com", consent="granted")
    return Facts(**{**base, **over})


def act(f: Facts, marketing: bool = True, cap: float = 16):
    d = decide(f, marketing=marketing, cap_hours=cap, now=NOW)
    return d.action, d.reason


@pytest.mark.parametrize("state", ["sent", "skipped", "failed"])
def test_final_records_are_done_whatever_else_changed(state):
    assert act(ok(record_state=state, consent="denied", suppressed=True)) == ("done", None)


def test_consent_suppression_address_and_profile():
    assert act(ok()) == ("send", None)
    assert act(ok(consent="denied")) == ("skip", "no_consent")
    assert act(ok(consent="pending")) == ("skip", "no_consent")
    assert act(ok(consent=None)) == ("skip", "no_consent")
    assert act(ok(suppressed=True)) == ("skip", "suppressed")
    assert act(ok(email=None)) == ("skip", "no_address")
    assert act(ok(profile_status=None)) == ("skip", "not_found")
    assert act(ok(profile_status="erased")) == ("skip", "erased")
    # transactional: no consent needed, no cap, but never to a suppressed address
    assert act(ok(consent="denied", last_marketing_at=clock.iso(NOW)), marketing=False) == ("send", None)
    assert act(ok(suppressed=True), marketing=False) == ("skip", "suppressed")


def test_frequency_cap_defers_to_the_allowed_time():
    d = decide(ok(last_marketing_at=clock.iso(NOW - timedelta(hours=10))), marketing=True, cap_hours=16, now=NOW)
    assert d.action == "defer" and d.at == clock.iso(NOW + timedelta(hours=6))
    assert act(ok(last_marketing_at=clock.iso(NOW - timedelta(hours=16)))) == ("send", None)
    assert act(ok(last_marketing_at=clock.iso(NOW)), cap=0) == ("send", None)
    # a deferred record whose time came is sent; one still capped is deferred again
    assert act(ok(record_state="deferred", record_attempt=0, until=clock.iso(NOW))) == ("send", None)
    again = ok(record_state="deferred", last_marketing_at=clock.iso(NOW - timedelta(hours=1)))
    assert act(again)[0] == "defer"


def test_leases_a_live_one_waits_an_expired_one_is_taken_over():
    live = ok(record_state="sending", record_attempt=1, lease_until=clock.iso(NOW + timedelta(seconds=30)))
    d = decide(live, marketing=True, cap_hours=16, now=NOW)
    assert d.action == "wait" and d.at == live.lease_until
    expired = ok(record_state="sending", record_attempt=1, lease_until=clock.iso(NOW - timedelta(seconds=1)),
                 last_marketing_at=clock.iso(NOW))  # its own cap reservation: not a reason to defer
    d = decide(expired, marketing=True, cap_hours=16, now=NOW)
    assert d.action == "send" and d.takeover
    # consent withdrawn meanwhile: the takeover skips instead of sending again
    assert act(ok(record_state="sending", lease_until=clock.iso(NOW), consent="denied")) == ("skip", "no_consent")


def test_delays_chain_in_sqs_maximum_steps():
    assert delay_until(clock.iso(NOW + timedelta(hours=6)), NOW) == 900
    assert delay_until(clock.iso(NOW + timedelta(seconds=30)), NOW) == 31
    assert delay_until(clock.iso(NOW - timedelta(seconds=30)), NOW) == 1
