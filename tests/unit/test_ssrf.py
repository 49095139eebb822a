"""SSRF through connector URLs (issue 9, section 4): outside local development a vendor URL
must not reach loopback, private, link-local, CGNAT or IPv6 ULA/mapped addresses. Checked
when the config is saved (literal addresses) and when connecting (after DNS, every
address; the connection goes to the checked one), no redirect is followed, and an error
shows the vendor's status, never its body. Local development (RAPPORT_LOCAL_DEV=1, which
`rapport dev` and the test stack set) still reaches loopback fakes."""
from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from connectors.sdk import net
from connectors.sdk.errors import VendorError
from connectors.sdk.http import Client
from connectors.shopify import ShopifyConfig
from connectors.woocommerce import WooCommerceConfig
from tests.fakes import FakeVendor, Reply

INTERNAL = "internal-only: db password hunter2"


class Internal(FakeVendor):
    """A service that must stay internal: it answers with something private, or redirects."""

    def __init__(self) -> None:
        super().__init__()
        self.hosts: list[str] = []

    def route(self, method, path, query, headers):
        self.hosts.append(headers.get("Host"))
        if path.startswith("/redirect"):
            return Reply(302, {"note": INTERNAL}, {"Location": "http://169.254.169.254/latest/meta-data/"})
        if path.startswith("/broken"):
            return Reply(500, {"note": INTERNAL})
        return Reply(200, {"shop": {"note": INTERNAL}})


@pytest.fixture()
def internal():
    with Internal() as server:
        yield server


@pytest.fixture()
def deployed(monkeypatch):
    """As deployed: the local-development setting is absent."""
    monkeypatch.delenv(net.LOCAL_DEV_ENV, raising=False)


@pytest.mark.parametrize("url", [
    "https://127.0.0.1", "https://10.0.0.5", "https://172.16.3.4", "https://192.168.1.1",
    "https://169.254.169.254", "https://100.64.0.1", "https://[::1]:1", "https://[fd12::1]",
    "https://[::ffff:10.0.0.1]", "https://localhost:8443", "https://0.0.0.0", "http://[::1]:1",
])
def test_a_private_literal_address_is_refused_when_saved(deployed, url):
    for model, field in ((ShopifyConfig, "shop_url"), (WooCommerceConfig, "store_url")):
        with pytest.raises(ValidationError) as exc:
            model.model_validate({field: url, "access_token": "t", "consumer_key": "k", "consumer_secret": "s"})
        assert field in str(exc.value)


def test_a_public_address_or_name_is_accepted_when_saved(deployed):
    for url in ("https://8.8.8.8", "https://shop.myshopify.com", "https://[2606:4700::1111]"):
        assert ShopifyConfig.model_validate({"shop_url": url, "access_token": "t"}).shop_url == url


def test_a_name_that_resolves_to_a_private_address_is_refused_at_connect_time(deployed, internal, monkeypatch):
    port = int(internal.url.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    answers = {"shop.rebinding.example": ["93.184.216.34", "127.0.0.1"], "meta.example": ["169.254.169.254"]}

    def fake_dns(host, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    for host in answers:  # every address is checked, not only the first
        client = Client(f"http://{host}:{port}", retries=0)
        with pytest.raises(VendorError) as exc:
            client.get("shop.json")
        assert exc.value.kind == "config" and "refused to connect" in str(exc.value)
    assert internal.requests == 0


def test_the_connection_goes_to_the_address_that_was_checked(deployed, internal, monkeypatch):
    """The name is resolved once, checked, and that address connected to (the Host header
    keeps the name): a DNS answer that changes between check and connect cannot redirect it."""
    port = int(internal.url.rsplit(":", 1)[1])
    lookups = []

    def fake_dns(host, *args, **kwargs):
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    monkeypatch.setattr(net, "refused", lambda address: None)  # pretend loopback were public
    body, _ = Client(f"http://vendor.example:{port}").get_json("shop.json")
    assert body["shop"] and internal.hosts == [f"vendor.example:{port}"]
    assert [h for h in lookups if h != "127.0.0.1"] == ["vendor.example"]  # the socket got the checked address


def test_redirects_are_not_followed_and_errors_never_show_the_body(internal):
    client = Client(internal.url, retries=0)
    with pytest.raises(VendorError) as exc:
        client.get("redirect")
    assert exc.value.status == 302 and exc.value.kind == "config" and INTERNAL not in str(exc.value)
    assert internal.requests == 1  # the redirect was not followed
    with pytest.raises(VendorError) as exc:
        client.get("broken")
    assert exc.value.status == 500 and INTERNAL not in str(exc.value) and "500" in str(exc.value)


def test_local_development_still_reaches_loopback_fakes(internal):
    assert net.local_dev()
    assert ShopifyConfig.model_validate({"shop_url": internal.url, "access_token": "t"}).shop_url == internal.url
    body, _ = Client(internal.url).get_json("shop.json")
    assert body["shop"]["note"] == INTERNAL


def test_the_api_refuses_internal_urls_and_check_reflects_no_body(deployed, tenant, internal):
    """The attack: shop_url at an internal service, the answer reflected by check."""
    for url in (f"{internal.url}/internal", "https://10.0.0.5", "https://169.254.169.254", "http://[::1]:1"):
        r = tenant.http.post("/v1/connections", json={
            "connector": "shopify", "name": "ssrf", "config": {"shop_url": url, "access_token": "t"}})
        assert r.status_code == 422 and r.json()["field"] == "config.shop_url", r.text
    assert internal.requests == 0


def test_a_connection_saved_in_local_development_cannot_reach_loopback_deployed(tenant, internal, monkeypatch):
    r = tenant.http.post("/v1/connections", json={
        "connector": "shopify", "name": "ssrf", "config": {"shop_url": f"{internal.url}/internal", "access_token": "t"}})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = tenant.http.post(f"/v1/connections/{cid}/check")  # local development: the loopback fake answers
    assert r.status_code == 200 and INTERNAL not in r.text
    monkeypatch.delenv(net.LOCAL_DEV_ENV)
    before = internal.requests
    r = tenant.http.post(f"/v1/connections/{cid}/check")
    assert r.status_code == 422 and r.json()["error"] == "config" and INTERNAL not in r.text, r.text
    assert internal.requests == before


# 127.0.0.1 and the metadata service's 169.254.169.254 in the spellings inet_aton (and so
# getaddrinfo and curl) accept: the save-time check once read only the dotted-quad ones
NUMERIC_SPELLINGS = ["2130706433", "0177.0.0.1", "0x7f.1", "127.1", "[::ffff:127.0.0.1]", "[::1]",
                     "2852039166", "0251.0376.0251.0376", "[::ffff:a9fe:a9fe]", "0xa9.0xfe.0xa9.0xfe"]


@pytest.mark.parametrize("host", NUMERIC_SPELLINGS)
def test_every_spelling_of_loopback_and_the_metadata_address_is_refused(deployed, host):
    with pytest.raises(ValidationError) as exc:
        ShopifyConfig.model_validate({"shop_url": f"https://{host}", "access_token": "t"})
    assert "shop_url" in str(exc.value)
    with pytest.raises(net.BlockedAddress):
        net.check_host(host)
    with pytest.raises(net.BlockedAddress):  # at connect time too, without asking DNS
        net.resolve(host.strip("[]"), 443)


def test_numeric_spellings_of_public_addresses_still_pass(deployed):
    assert net.literal("134744072") == "8.8.8.8" and net.literal("0x8.0x8.0x8.0x8") == "8.8.8.8"
    net.check_host("134744072")
    net.check_host("8.8.8.8")
    assert net.literal("shop.example.com") is None and net.literal("1.2.3.4.5") is None
