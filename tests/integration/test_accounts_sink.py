"""ERP records through connectors.sink as a connector writes them (docs/accounts.md):
accounts upserted by external id, contacts linked in any order (a stub account first),
B2B orders with and without a contact person, invoices and the balance they owe, read
twice, late and out of order."""
from __future__ import annotations

import random

from connectors import sink
from connectors.sdk.base import AccountRecord, CustomerRecord, InvoiceRecord, OrderLine, OrderRecord, Rejected

LINE = [OrderLine("sku-1", "Beans 1 kg", 4, 2500)]


def write(tenant, records, source="erpnext") -> dict:
    out = sink.write(tenant.ctx, source, "test", records)
    return {**out.counts, "rejected_list": out.rejected}


def account(tenant, xid, source="erpnext") -> dict:
    found = tenant.http.get("/v1/accounts/lookup", params={"source": source, "external_id": xid}).json()["data"]
    assert len(found) == 1, found
    return found[0]


def company(xid, at, **profile) -> AccountRecord:
    return AccountRecord(xid, at, {"name": "Globex Ltd", "payment_terms": "Net 30", **profile})


def test_accounts_upsert_by_external_id_and_an_older_version_never_wins(tenant):
    first = write(tenant, [company("C-1", "2026-03-01T10:00:00Z", credit_limit=100000)])
    assert (first["created"], first["updated"]) == (1, 0)
    newer = write(tenant, [company("C-1", "2026-03-03T10:00:00Z", credit_limit=250000)])
    assert newer["updated"] == 1
    older = write(tenant, [company("C-1", "2026-03-02T10:00:00Z", credit_limit=1)])
    assert older["unchanged"] == 1 and account(tenant, "C-1")["credit_limit"] == 250000
    same = write(tenant, [company("C-1", "2026-03-03T10:00:00Z", credit_limit=250000)])
    assert same["unchanged"] == 1
    bad = write(tenant, [company("C-2", "2026-03-01T10:00:00Z", currency="euro"), AccountRecord("C-3", "2026", {}),
                         Rejected("C-4", "no name in the vendor record")])
    assert bad["rejected"] == 3 and bad["created"] == 0
    assert any("currency" in r["reason"] for r in bad["rejected_list"])
    assert tenant.http.get("/v1/accounts/lookup", params={"source": "erpnext", "external_id": "C-2"}
                           ).json()["data"] == []


def test_a_contact_before_its_account_makes_a_stub_the_account_record_fills(tenant):
    person = CustomerRecord("CONT-1", "2026-03-01T10:00:00Z", {"email": "jo@globex.example",
                                                                "name": {"given": "Jo"}}, account="C-9", role="AP")
    assert write(tenant, [person])["created"] == 1
    stub = account(tenant, "C-9")
    assert stub["stub"] is True and stub["name"] is None
    cid = tenant.http.get("/v1/customers/lookup", params={"email": "jo@globex.example"}).json()["data"][0]["id"]
    assert write(tenant, [company("C-9", "2026-03-02T10:00:00Z")])["created"] == 1  # the stub filled
    filled = account(tenant, "C-9")
    assert filled["id"] == stub["id"] and filled["stub"] is False and filled["name"] == "Globex Ltd"
    contacts = tenant.http.get(f"/v1/accounts/{filled['id']}/contacts").json()["data"]
    assert [(c["customer_id"], c["role"], c["source"]) for c in contacts] == [(cid, "AP", "erpnext")]
    assert tenant.http.get(f"/v1/customers/{cid}/360").json()["account"] == {
        "id": filled["id"], "name": "Globex Ltd", "role": "AP"}
    # the vendor moves the contact to another company: the link follows; an older record does not move it back
    write(tenant, [CustomerRecord("CONT-1", "2026-03-05T10:00:00Z", {"email": "jo@globex.example"}, account="C-10",
                                  role="Buyer")])
    moved = tenant.http.get(f"/v1/customers/{cid}").json()
    assert moved["account_id"] == account(tenant, "C-10")["id"] and moved["account_role"] == "Buyer"
    assert tenant.http.get(f"/v1/accounts/{filled['id']}/contacts").json()["data"] == []
    write(tenant, [person])
    assert tenant.http.get(f"/v1/customers/{cid}").json()["account_id"] == account(tenant, "C-10")["id"]


def test_b2b_orders_with_and_without_a_contact_person(tenant):
    buyer = CustomerRecord("CONT-7", "2026-03-01T10:00:00Z", {"email": "buyer@initech.example"})
    orders = [
        OrderRecord("SO-1", "2026-03-01T10:00:00Z", "web", "EUR", "2026-03-01T09:00:00Z", LINE, 10000,
                    customer=buyer, account="C-20", paid_at="2026-03-01T09:10:00Z"),
        OrderRecord("SO-2", "2026-03-02T10:00:00Z", "web", "EUR", "2026-03-02T09:00:00Z", LINE, 10000,
                    account="C-20"),  # the company ordered; no contact person
    ]
    counts = write(tenant, orders)
    assert counts["created"] == 2 and counts["rejected"] == 0, counts
    acc = account(tenant, "C-20")
    view = tenant.http.get(f"/v1/accounts/{acc['id']}/360").json()
    briefs = {o["external_id"]: o for o in view["recent_orders"]}
    assert [o["external_id"] for o in view["recent_orders"]] == ["SO-2", "SO-1"]
    assert briefs["SO-2"]["customer_id"] is None and briefs["SO-2"]["status"] == "placed"
    order = tenant.http.get(f"/v1/orders/{briefs['SO-1']['order_id']}").json()
    assert order["account_id"] == acc["id"] and order["customer_id"] == briefs["SO-1"]["customer_id"]
    assert order["status"] == "paid"
    # read again, newer (the company's order got paid) and older: converges, never goes back
    paid = OrderRecord("SO-2", "2026-03-04T10:00:00Z", "web", "EUR", "2026-03-02T09:00:00Z", LINE, 10000,
                       account="C-20", paid_at="2026-03-03T09:00:00Z")
    assert write(tenant, [paid])["updated"] == 1
    assert write(tenant, [orders[1]])["unchanged"] == 1
    assert write(tenant, orders)["unchanged"] == 2
    view = tenant.http.get(f"/v1/accounts/{acc['id']}/360").json()
    assert {o["external_id"]: o["status"] for o in view["recent_orders"]} == {"SO-2": "paid", "SO-1": "paid"}


def invoice(xid, at, outstanding, status="open", currency="EUR", total=10000, **kw) -> InvoiceRecord:
    return InvoiceRecord(xid, at, f"ACC-SINV-{xid}", currency, "2026-03-01T00:00:00Z", total, outstanding,
                         status=status, account=kw.pop("account", "C-30"), due_at="2026-03-31T00:00:00Z", **kw)


def test_balance_follows_invoices_in_any_order_and_duplicates_count_once(tenant):
    versions = [  # INV-A: issued, part paid, paid; INV-B: open then cancelled; INV-C: USD, open
        invoice("A", "2026-03-01T10:00:00Z", 10000), invoice("A", "2026-03-05T10:00:00Z", 4000),
        invoice("A", "2026-03-09T10:00:00Z", 0, status="paid", paid_at="2026-03-09T09:00:00Z"),
        invoice("B", "2026-03-02T10:00:00Z", 3000, total=3000),
        invoice("B", "2026-03-06T10:00:00Z", 3000, total=3000, status="cancelled", cancelled_at="2026-03-06T09:00:00Z"),
        invoice("C", "2026-03-03T10:00:00Z", 700, currency="USD", total=700),
    ]
    shuffled = versions * 2
    random.Random(14).shuffle(shuffled)
    for r in shuffled:  # one record a page, as webhooks deliver them
        assert write(tenant, [r])["rejected"] == 0
    acc = account(tenant, "C-30")
    assert acc["stub"] is True  # invoices arrived before (without) the account's record
    assert acc["balance"] == {"USD": 700} and acc["open_invoices"] == 1
    got = {i["external_id"]: i for i in tenant.http.get("/v1/invoices", params={"account_id": acc["id"]}
                                                        ).json()["data"]}
    assert got["A"]["status"] == "paid" and got["B"]["status"] == "cancelled" and got["B"]["outstanding"] == 0
    assert got["C"]["overdue"] is True  # open and past 2026-03-31
    # a new open invoice, then one page holding duplicates and an older version
    write(tenant, [invoice("D", "2026-03-10T10:00:00Z", 2500)])
    assert account(tenant, "C-30")["balance"] == {"USD": 700, "EUR": 2500}
    page = write(tenant, [invoice("D", "2026-03-10T10:00:00Z", 2500), invoice("D", "2026-03-08T10:00:00Z", 9999)])
    assert page["unchanged"] == 2 and account(tenant, "C-30")["balance"] == {"USD": 700, "EUR": 2500}


def test_an_invoice_with_a_buyer_and_no_account_and_one_with_neither(tenant):
    person = CustomerRecord("P-5", "2026-03-01T10:00:00Z", {"email": "solo@private.example"})
    counts = write(tenant, [invoice("E", "2026-03-01T10:00:00Z", 100, account=None, customer=person, total=100),
                            invoice("F", "2026-03-01T10:00:00Z", 100, account=None, total=100),
                            invoice("G", "2026-03-01T10:00:00Z", 200, account="C-31", total=100)])
    assert counts["created"] == 1 and counts["rejected"] == 2, counts
    reasons = " ".join(r["reason"] for r in counts["rejected_list"])
    assert "belong to no one" in reasons and "outstanding" in reasons
    cid = tenant.http.get("/v1/customers/lookup", params={"email": "solo@private.example"}).json()["data"][0]["id"]
    mine = tenant.http.get("/v1/invoices", params={"customer_id": cid}).json()["data"]
    assert [(i["external_id"], i["account_id"]) for i in mine] == [("E", None)]


def test_an_invoice_names_its_order_once_the_order_is_known(tenant):
    buyer = CustomerRecord("CONT-8", "2026-03-01T10:00:00Z", {"email": "po@umbrella.example"})
    write(tenant, [invoice("H", "2026-03-01T10:00:00Z", 10000, account="C-40", order="SO-40", customer=buyer)])
    first = tenant.http.get("/v1/invoices", params={"status": "open"}).json()["data"]
    h = next(i for i in first if i["external_id"] == "H")
    assert h["order_id"] is None and h["order_external_id"] == "SO-40"
    write(tenant, [OrderRecord("SO-40", "2026-03-01T10:00:00Z", "web", "EUR", "2026-03-01T09:00:00Z", LINE, 10000,
                               customer=buyer, account="C-40")])
    write(tenant, [invoice("H", "2026-03-02T10:00:00Z", 5000, account="C-40", order="SO-40", customer=buyer)])
    h = tenant.http.get(f"/v1/invoices/{h['id']}").json()
    assert h["order_id"] and h["order_id"].startswith("ord_") and h["outstanding"] == 5000
    assert tenant.http.get(f"/v1/orders/{h['order_id']}").json()["account_id"] == account(tenant, "C-40")["id"]
