"""What a webhook endpoint may be (crm/webhooks): its URL (https to a public host; every
spelling of loopback and the metadata address refused when saved, with local development
off as deployed) and its event type patterns (*, exact types, families)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from common import net
from crm.errors import Invalid
from crm.events import TYPES
from crm.webhooks import endpoints
from crm.webhooks.schemas import WebhookEndpoint, WebhookEndpointCreate

SPELLINGS = ["2130706433", "0177.0.0.1", "0x7f.1", "[::ffff:127.0.0.1]", "[::1]",
             "2852039166", "0251.0376.0251.0376", "[::ffff:a9fe:a9fe]"]


@pytest.fixture()
def deployed(monkeypatch):
    monkeypatch.delenv(net.LOCAL_DEV_ENV, raising=False)


@pytest.mark.parametrize("host", SPELLINGS + ["127.0.0.1", "10.1.2.3", "169.254.169.254", "100.64.0.1",
                                              "[fd00::1]", "224.0.0.1", "localhost", "api.localhost", "0.0.0.0"])
def test_a_url_at_our_own_network_is_refused_naming_url(deployed, host):
    with pytest.raises(Invalid) as exc:
        endpoints.check_url(f"https://{host}/hooks")
    assert exc.value.field == "url" and "public address" in exc.value.detail


@pytest.mark.parametrize("url", ["http://hooks.example.com/x", "http://127.0.0.1:8080/x", "ftp://hooks.example.com",
                                 "https://user:pw@hooks.example.com/x", "https:///x", "https://hooks.example.com:99999/"])
def test_plain_http_credentials_and_broken_urls_are_refused(deployed, url):
    with pytest.raises(Invalid) as exc:
        endpoints.check_url(url)
    assert exc.value.field == "url"


def test_public_urls_pass(deployed):
    for url in ("https://hooks.example.com/rapport?x=1", "https://8.8.8.8/h", "https://[2606:4700::1111]/h"):
        assert endpoints.check_url(url) == url


def test_local_development_allows_plain_http_to_loopback_only(monkeypatch):
    monkeypatch.setenv(net.LOCAL_DEV_ENV, "1")
    assert endpoints.check_url("http://127.0.0.1:9000/h")
    assert endpoints.check_url("http://localhost:9000/h")
    with pytest.raises(Invalid):
        endpoints.check_url("http://hooks.example.com/h")


def _endpoint(types):
    return WebhookEndpoint(id="whe_1", url="https://x.example", types=types, enabled=True, ordered=False,
                           status="enabled", created_at="t", updated_at="t", version=1)


def test_matches_star_exact_types_and_families():
    assert all(endpoints.matches(_endpoint(["*"]), t) for t in TYPES)
    order = _endpoint(["order.*", "tier.changed"])
    assert endpoints.matches(order, "order.paid") and endpoints.matches(order, "tier.changed")
    assert not endpoints.matches(order, "orders.paid") and not endpoints.matches(order, "customer.created")
    assert not endpoints.matches(_endpoint(["order.paid"]), "order.placed")


@pytest.mark.parametrize("bad", ["orders.*", "order.shipped", "", "order", "*.*", "Order.paid"])
def test_unknown_types_and_families_are_refused_naming_the_item(bad):
    with pytest.raises(ValidationError) as exc:
        WebhookEndpointCreate.model_validate({"url": "https://x.example", "types": ["order.paid", bad]})
    assert exc.value.errors()[0]["loc"] == ("types", 1)


def test_every_type_and_family_is_accepted_and_listed_in_the_document():
    families = {t.split(".")[0] + ".*" for t in TYPES}
    body = WebhookEndpointCreate.model_validate({"url": "https://x.example", "types": ["*", *TYPES, *families]})
    assert len(body.types) == 1 + len(TYPES) + len(families)
    enum = WebhookEndpointCreate.model_json_schema()["properties"]["types"]["items"]["enum"]
    assert set(enum) == {"*", *TYPES, *families}
