"""RFC 8058 one-click unsubscribe over HTTP (api/routes/unsubscribe.py,
crm/email/unsubscribe.py): a GET only shows a page (link scanners change nothing), a POST
without any key unsubscribes (consent, suppression, the campaign's count, the timeline),
a repeat changes nothing more, a forged or malformed link is 404 without saying why.

The campaign is written as crm/email/campaigns.py stores one (its API is another part of
issue 13): what this file tests is the counter the unsubscribe ADDs to it."""
from __future__ import annotations

import pytest

from tests.conftest import partition_items

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
           "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120"}
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def campaign(tenant) -> str:
    from crm import clock, ids
    from crm.storage import CampaignItem

    cid = "cmp_" + ids.customer_id().removeprefix("cus_")
    now = clock.now_iso()
    CampaignItem(tenant.ctx.key("CAMPAIGNS"), cid, campaign_id=cid, name="Spring", template_id="tpl_x",
                 segment_id="seg_x", status="sent", created_at=now, updated_at=now).save()
    return cid


def campaign_item(tenant, cid):
    from crm.storage import CampaignItem

    return CampaignItem.get(tenant.ctx.key("CAMPAIGNS"), cid, consistent_read=True)


@pytest.fixture()
def subscribed(tenant):
    customer = tenant.create_customer(email="Ann@Example.com", consent={"email": {"status": "granted",
                                                                                  "source": "checkout"}})
    return tenant, customer, campaign(tenant)


def _path(tenant, customer_id, ref) -> str:
    from crm.email import links

    url = links.url(tenant.id, customer_id, ref)
    token = links.token(tenant.id, customer_id, ref)
    assert url.endswith(f"/v1/unsubscribe/{token}")
    return f"/v1/unsubscribe/{token}"


def _consent(tenant, customer_id) -> dict:
    return tenant.http.get(f"/v1/customers/{customer_id}").json()["consent"]["email"]


def _suppressed(tenant, address):
    from crm.email import suppression
    from crm.storage import SuppressionItem

    try:
        return SuppressionItem.get(suppression.pk(tenant.ctx), suppression.digest(address), consistent_read=True)
    except SuppressionItem.DoesNotExist:
        return None


def test_a_get_shows_a_page_and_changes_nothing(subscribed, anon, raw_table):
    """What a link scanner (or a preview) does: follow the link with GET, even the form's
    target with GET again. Nobody is unsubscribed."""
    tenant, customer, cid = subscribed
    path = _path(tenant, customer["id"], cid)
    before = partition_items(raw_table, tenant)
    for _ in range(2):
        page = anon.get(path, headers=BROWSER)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert '<form method="post">' in page.text and "Unsubscribe" in page.text and "Acme" in page.text
        assert "ann@example.com" not in page.text.lower()  # the page never shows the address
        assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert partition_items(raw_table, tenant) == before
    assert _consent(tenant, customer["id"])["status"] == "granted"


def test_one_click_post_without_a_key_unsubscribes_once(subscribed, anon, raw_table):
    tenant, customer, cid = subscribed
    path = _path(tenant, customer["id"], cid)
    version = campaign_item(tenant, cid).version
    r = anon.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)  # as Gmail, Yahoo do
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html") and "unsubscribed" in r.text
    consent = _consent(tenant, customer["id"])
    assert consent["status"] == "denied" and consent["source"] == "unsubscribe" and consent["at"].endswith("Z")
    gone = _suppressed(tenant, "ann@example.com")
    assert gone is not None and gone.reason == "unsubscribe"
    item = campaign_item(tenant, cid)
    assert item.unsubscribed == 1 and item.version == version  # counted, the version untouched
    entries = tenant.http.get(f"/v1/customers/{customer['id']}/events").json()["data"]
    assert [e["type"] for e in entries].count("email.unsubscribed") == 1
    after = partition_items(raw_table, tenant)
    for again in ({"content": b"List-Unsubscribe=One-Click", "headers": ONE_CLICK}, {}):  # a retry, the page's button
        r = anon.post(path, **again)
        assert r.status_code == 200 and "unsubscribed" in r.text
    assert partition_items(raw_table, tenant) == after  # nothing more: same consent, count, entries
    assert campaign_item(tenant, cid).unsubscribed == 1


def test_the_confirmation_form_and_multipart_posts_work(tenant, anon):
    """The page's own button (form-encoded, from a browser) and RFC 8058's preferred
    multipart/form-data both unsubscribe."""
    for i, send in enumerate([
        lambda p: anon.post(p, data={"List-Unsubscribe": "One-Click"}, headers=BROWSER),
        lambda p: anon.post(p, files={"List-Unsubscribe": (None, "One-Click")}),
    ]):
        c = tenant.create_customer(email=f"m{i}@example.com", consent={"email": {"status": "granted", "source": "x"}})
        r = send(_path(tenant, c["id"], "jrn_01ARZ3NDEKTSV4RRFFQ69G5FAV"))  # a journey's email: no campaign
        assert r.status_code == 200, r.text
        assert _consent(tenant, c["id"])["status"] == "denied"


def test_forged_and_malformed_links_are_404_and_say_nothing_more(subscribed, anon, raw_table):
    from crm.email import links

    tenant, customer, cid = subscribed
    good = links.token(tenant.id, customer["id"], cid)
    body, sig = good.split(".")
    forged = [
        f"{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}",          # signature changed
        f"{links.token(tenant.id, customer['id'], 'cmp_other').split('.')[0]}.{sig}",  # payload swapped
        "not-a-token", "a.b.c", "....", "%00",
        links.token("t0000000000zz", customer["id"], cid),                  # signed, but no such tenant
        links.token(tenant.id, "cus_nope", cid),                            # signed, not a customer id
    ]
    before = partition_items(raw_table, tenant)
    shapes = set()
    for token in forged:
        for method in ("GET", "POST"):
            r = anon.request(method, f"/v1/unsubscribe/{token}")
            assert r.status_code == 404, (token, method, r.text)
            shapes.add((r.headers["content-type"], r.json()["code"], r.json()["detail"]))
            page = anon.request(method, f"/v1/unsubscribe/{token}", headers=BROWSER)
            assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
            shapes.add(page.text)
    assert len(shapes) == 2  # one problem, one page: nothing tells the cases apart
    assert partition_items(raw_table, tenant) == before
    assert _consent(tenant, customer["id"])["status"] == "granted"


def test_an_erased_customer_gets_the_page_and_nothing_changes(subscribed, anon, raw_table):
    tenant, customer, cid = subscribed
    assert tenant.http.delete(f"/v1/customers/{customer['id']}").status_code == 200
    path = _path(tenant, customer["id"], cid)
    before = partition_items(raw_table, tenant)
    r = anon.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert r.status_code == 200 and "unsubscribed" in r.text
    assert partition_items(raw_table, tenant) == before
    assert campaign_item(tenant, cid).unsubscribed == 0


def test_another_tenants_link_never_touches_this_tenant(subscribed, other_tenant, anon, raw_table):
    """A link names its tenant inside the signature: B's customer id under A's tenant id is
    a different (valid) link, to A's nobody; it changes nothing of B's."""
    tenant, _customer, cid = subscribed
    b_customer = other_tenant.create_customer(email="bee@example.com", consent={"email": {"status": "granted",
                                                                                          "source": "x"}})
    b_before = partition_items(raw_table, other_tenant)
    r = anon.post(_path(tenant, b_customer["id"], cid), content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert r.status_code == 200  # A's link to a customer A does not have: the generic page
    assert partition_items(raw_table, other_tenant) == b_before
    assert _consent(other_tenant, b_customer["id"])["status"] == "granted"
