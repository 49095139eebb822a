"""What merge, erasure and export do with a customer's B2B side (docs/accounts.md): the
contact link and the customer's invoices follow the declared schema."""
from __future__ import annotations

from connectors import sink
from connectors.sdk.base import CustomerRecord, InvoiceRecord


def _account(tenant, name: str) -> str:
    r = tenant.http.post("/v1/accounts", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _link(tenant, account: str, cid: str, role: str) -> None:
    r = tenant.http.post(f"/v1/accounts/{account}/contacts", json={"customer_id": cid, "role": role})
    assert r.status_code == 201, r.text


def _contacts(tenant, account: str) -> list[tuple[str, str]]:
    return [(c["customer_id"], c["role"]) for c in
            tenant.http.get(f"/v1/accounts/{account}/contacts").json()["data"]]


def test_a_merged_away_contact_moves_to_the_survivor_unless_it_has_an_account(tenant):
    acme, globex = _account(tenant, "Acme"), _account(tenant, "Globex")
    survivor = tenant.create_customer(email="s@example.com")["id"]
    other = tenant.create_customer(email="o@example.com")["id"]
    _link(tenant, acme, other, "Buyer")
    assert tenant.http.post(f"/v1/customers/{survivor}/merge", json={"other_id": other}).status_code == 200
    merged = tenant.http.get(f"/v1/customers/{survivor}").json()
    assert (merged["account_id"], merged["account_role"]) == (acme, "Buyer")
    assert _contacts(tenant, acme) == [(survivor, "Buyer")]
    # a survivor with an account of its own keeps it; the other's link is dropped
    third = tenant.create_customer(email="t@example.com")["id"]
    _link(tenant, globex, third, "CFO")
    assert tenant.http.post(f"/v1/customers/{survivor}/merge", json={"other_id": third}).status_code == 200
    assert tenant.http.get(f"/v1/customers/{survivor}").json()["account_id"] == acme
    assert _contacts(tenant, acme) == [(survivor, "Buyer")] and _contacts(tenant, globex) == []


def test_a_merged_away_customers_invoices_become_the_survivors(tenant):
    survivor = tenant.create_customer(email="keep@example.com", external_ids={"erpnext": "P-S"})["id"]
    other = tenant.create_customer(email="gone@example.com", external_ids={"erpnext": "P-O"})["id"]
    buyer = CustomerRecord("P-O", "2026-03-01T10:00:00Z", {"email": "gone@example.com"})
    out = sink.write(tenant.ctx, "erpnext", "test", [
        InvoiceRecord("M-1", "2026-03-01T10:00:00Z", "M-1", "EUR", "2026-03-01T00:00:00Z", 500, 500, account="M-ACC",
                      customer=buyer)])
    assert out.counts["created"] == 1, out.rejected
    assert tenant.http.post(f"/v1/customers/{survivor}/merge", json={"other_id": other}).status_code == 200
    mine = tenant.http.get("/v1/invoices", params={"customer_id": survivor}).json()["data"]
    assert [(i["number"], i["customer_id"]) for i in mine] == [("M-1", survivor)]
    assert tenant.http.get("/v1/invoices", params={"customer_id": other}).json()["data"] == []
    assert tenant.http.get(f"/v1/invoices/{mine[0]['id']}").json()["customer_id"] == survivor
    acc = mine[0]["account_id"]
    assert [i["customer_id"] for i in tenant.http.get("/v1/invoices", params={"account_id": acc}).json()["data"]] \
        == [survivor]
    assert tenant.http.get(f"/v1/accounts/{acc}").json()["balance"] == {"EUR": 500}  # a merge moves no money


def test_erasure_drops_the_contact_link_and_keeps_the_invoice_without_personal_data(tenant, raw_table):
    from functions import erasure

    acme = _account(tenant, "Acme Erase")
    cid = tenant.create_customer(email="erase-me@example.com", external_ids={"erpnext": "P-E"})["id"]
    _link(tenant, acme, cid, "Head of Purchasing")
    sink.write(tenant.ctx, "erpnext", "test", [
        InvoiceRecord("E-1", "2026-03-01T10:00:00Z", "E-1", "EUR", "2026-03-01T00:00:00Z", 900, 900,
                      customer=CustomerRecord("P-E", "2026-03-01T10:00:00Z", {"email": "erase-me@example.com"}))])
    assert tenant.http.delete(f"/v1/customers/{cid}").status_code == 200
    assert _contacts(tenant, acme) == []  # the link waiting for the follow-up is not shown
    erasure.run({"type": "erasure", "tenant_id": tenant.id, "customer_id": cid})  # the follow-up, as queued
    from tests.conftest import partition_items

    items = partition_items(raw_table, tenant)
    assert not [i for i in items if i.get("kind") == "account_contact"]
    assert "Head of Purchasing" not in str(items) and "erase-me" not in str(items)
    kept = tenant.http.get("/v1/invoices", params={"customer_id": cid}).json()["data"]
    assert [i["number"] for i in kept] == ["E-1"]  # a financial record, as orders are kept


def test_export_has_the_account_link_and_the_customers_invoices(tenant):
    acme = _account(tenant, "Acme Export")
    cid = tenant.create_customer(email="export@example.com", external_ids={"erpnext": "P-X"})["id"]
    _link(tenant, acme, cid, "Buyer")
    sink.write(tenant.ctx, "erpnext", "test", [
        InvoiceRecord("X-1", "2026-03-01T10:00:00Z", "X-1", "EUR", "2026-03-01T00:00:00Z", 900, 900, account="X-ACC",
                      customer=CustomerRecord("P-X", "2026-03-01T10:00:00Z", {"email": "export@example.com"}))])
    page = tenant.http.get(f"/v1/customers/{cid}/export").json()
    assert page["profile"]["account_id"] == acme and page["profile"]["account_role"] == "Buyer"
    assert [i["data"]["number"] for i in page["sections"]["invoices"]] == ["X-1"]
