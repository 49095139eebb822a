"""The Stripe double's parts that need no server: its copied fixtures, the form decoding."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rapport.stripe_double_forms import FormError, parse
from rapport.stripe_double_objects import FIXTURES

ROOT = Path(__file__).resolve().parents[2]
SHARED = next((p for p in (Path("/work/shared"), ROOT.parent / "shared") if p.is_dir()), None)


@pytest.mark.skipif(SHARED is None, reason="no shared fixtures checkout beside the repo")
def test_the_copied_stripe_fixtures_equal_the_shared_ones():
    shared = SHARED / "fixtures" / "stripe" / "objects"
    names = sorted(p.name for p in shared.glob("*.json"))
    assert names == sorted(p.name for p in FIXTURES.glob("*.json"))
    for name in names:
        assert json.loads((FIXTURES / name).read_text()) == json.loads((shared / name).read_text()), name


def test_every_template_the_double_uses_is_there():
    for name in ("customer", "price", "product", "billing.meter", "billing.meter_event", "checkout.session",
                 "subscription", "subscription_item", "invoice", "event", "entitlements.feature",
                 "entitlements.active_entitlement_summary"):
        assert (FIXTURES / f"{name}.json").is_file(), name


def test_form_decoding_as_the_official_library_and_curl_send_it():
    from urllib.parse import urlencode

    from stripe._encode import _api_encode

    params = {"mode": "subscription", "line_items": [{"price": "price_1", "quantity": 1}],
              "subscription_data": {"metadata": {"tenant": "t_1"}, "trial_period_days": 14},
              "expand": ["subscription", "line_items"], "lookup_keys": ["a", "b"], "flag": True}
    wire = urlencode(list(_api_encode(params)))
    assert parse(wire) == {"mode": "subscription", "line_items": [{"price": "price_1", "quantity": "1"}],
                           "subscription_data": {"metadata": {"tenant": "t_1"}, "trial_period_days": "14"},
                           "expand": ["subscription", "line_items"], "lookup_keys": ["a", "b"], "flag": "true"}
    assert parse("lookup_keys[]=a&lookup_keys[]=b&metadata[k]=") == {"lookup_keys": ["a", "b"], "metadata": {"k": ""}}
    assert parse("items[1][price]=p2&items[0][price]=p1") == {"items": [{"price": "p1"}, {"price": "p2"}]}


@pytest.mark.parametrize("key", ["a]b", "a[b", "[x]", "a[b]c"])
def test_malformed_form_keys_are_refused(key):
    with pytest.raises(FormError):
        parse(f"{key}=1")


def test_a_month_later_keeps_the_day_or_clamps_it_to_the_months_end():
    import datetime as dt

    from rapport.stripe_double_objects import add_month

    def ts(y, m, d):
        return int(dt.datetime(y, m, d, 12, tzinfo=dt.UTC).timestamp())

    assert add_month(ts(2026, 1, 31)) == ts(2026, 2, 28)
    assert add_month(ts(2026, 12, 15)) == ts(2027, 1, 15)
    assert add_month(ts(2028, 1, 30)) == ts(2028, 2, 29)
