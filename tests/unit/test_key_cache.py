"""The per-container API-key cache: hits within the TTL, expiry after it (<= 60 s)."""
from __future__ import annotations

import pytest

from crm import apikeys
from crm.context import TenantContext
from crm.errors import Unauthorized


@pytest.fixture()
def resolver(monkeypatch):
    calls = []
    outcome = {"value": TenantContext("t000000000000", "k", frozenset({"admin"}))}

    def fake_resolve(token, digest):
        calls.append(token)
        return outcome["value"]

    monkeypatch.setattr(apikeys, "_resolve", fake_resolve)
    apikeys.clear_cache()
    yield calls, outcome
    apikeys.clear_cache()


def test_lookups_are_cached_until_the_ttl(resolver, monkeypatch):
    calls, outcome = resolver
    monkeypatch.setenv("RAPPORT_KEY_CACHE_SECONDS", "60")
    clock = {"t": 1000.0}
    now = lambda: clock["t"]
    apikeys.authenticate("rpk_x", monotonic=now)
    clock["t"] += 59
    outcome["value"] = Unauthorized("this API key has been revoked")
    assert apikeys.authenticate("rpk_x", monotonic=now).tenant_id == "t000000000000"
    assert len(calls) == 1
    clock["t"] += 2  # past 60 s: the revocation is seen
    with pytest.raises(Unauthorized):
        apikeys.authenticate("rpk_x", monotonic=now)
    assert len(calls) == 2


def test_ttl_is_capped_at_60_seconds(monkeypatch):
    from crm import settings

    monkeypatch.setenv("RAPPORT_KEY_CACHE_SECONDS", "3600")
    assert settings.key_cache_seconds() == 60
    monkeypatch.setenv("RAPPORT_KEY_CACHE_SECONDS", "0")
    assert settings.key_cache_seconds() == 0


def test_missing_key_is_refused_without_a_lookup(resolver):
    calls, _ = resolver
    with pytest.raises(Unauthorized):
        apikeys.authenticate(None)
    assert calls == []


def test_a_fresh_lookup_skips_the_cache_and_refreshes_it(resolver, monkeypatch):
    """Admin routes authenticate with fresh=True: a revocation is seen at once, and the
    cached entry is replaced so other routes see it too."""
    calls, outcome = resolver
    monkeypatch.setenv("RAPPORT_KEY_CACHE_SECONDS", "60")
    now = lambda: 1000.0  # noqa: E731
    apikeys.authenticate("rpk_x", monotonic=now)
    outcome["value"] = Unauthorized("this API key has been revoked")
    with pytest.raises(Unauthorized):
        apikeys.authenticate("rpk_x", fresh=True, monotonic=now)
    with pytest.raises(Unauthorized):
        apikeys.authenticate("rpk_x", monotonic=now)  # from the refreshed cache
    assert len(calls) == 2
