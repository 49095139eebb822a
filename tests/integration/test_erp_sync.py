"""ERP data in the 360, end to end: a connection created over HTTP against the fake
ERPNext site (tests/fakes/erpnext.py) or the fake Odoo (tests/fakes/odoo.py), synced by
the runner as ``sync_work`` runs it, and everything asserted through the API a user
reads: the account (lookup by source and external id), its 360 (contacts with roles,
latest orders and invoices, the balance its open invoices owe), ``/v1/invoices`` and a
contact's own 360. Then the vendor changes documents (an invoice paid, an order
cancelled, a contact moved to another company) and an incremental run brings exactly
that; a second backfill changes nothing."""

from __future__ import annotations

import pytest

from tests.connector_helpers import wait_run
from tests.fakes.erpnext import FakeFrappe, address_doc, contact_doc, customer_doc, sales_invoice_doc, sales_order_doc
from tests.fakes.odoo import API_KEY, DATABASE, FakeOdoo

HOOK_SECRET = "frappe-hook-secret-e2e"
COUNTS = ("created", "updated", "unchanged", "rejected")


def connect(tenant, connector: str, config: dict) -> str:
    r = tenant.http.post("/v1/connections", json={"connector": connector, "name": f"{connector} e2e", "config": config})
    assert r.status_code == 201, r.text
    assert not any(str(v) in r.text for k, v in config.items() if k in ("api_key", "api_secret", "webhook_secret"))
    return r.json()["id"]


def sync(tenant, cid: str, mode: str, *, queued: bool = False) -> dict:
    """POST …/sync (202, the queued run), the run executed as the sync queue's consumer
    would (in process, re-queued while paused; ``queued``: by the event pipeline's own
    consumer), then the run as GET …/runs/{id} shows it."""
    from connectors import runner

    r = tenant.http.post(f"/v1/connections/{cid}/sync", json={"mode": mode})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    if queued:
        return wait_run(tenant, cid, run_id)
    runner.run_to_end(tenant.ctx, cid, run_id, sleep=lambda s: None, client_options={"sleep": lambda s: None})
    run = tenant.http.get(f"/v1/connections/{cid}/runs/{run_id}").json()
    assert run["status"] == "succeeded", run
    return run


def counts(run: dict) -> dict[str, tuple[int, ...]]:
    """stream -> (created, updated, unchanged, rejected)."""
    return {name: tuple(c.get(k, 0) for k in COUNTS) for name, c in run["streams"].items()}


def lookup(tenant, what: str, source: str, xid: str) -> dict:
    found = tenant.http.get(f"/v1/{what}/lookup", params={"source": source, "external_id": xid}).json()["data"]
    assert len(found) == 1, (what, xid, found)
    return found[0]


def view(tenant, account_id: str) -> dict:
    r = tenant.http.get(f"/v1/accounts/{account_id}/360")
    assert r.status_code == 200, r.text
    return r.json()


# ERPNext ----------------------------------------------------------------------------------


@pytest.fixture
def site():
    with FakeFrappe() as fake:
        fake.max_page_length = 3  # several keyset pages per stream, even on this small site
        yield fake


def erpnext_config(site: FakeFrappe) -> dict:
    return {"base_url": site.url, "api_key": site.key, "api_secret": site.secret, "webhook_secret": HOOK_SECRET}


def erp_books(site: FakeFrappe) -> None:
    """Two companies and a private customer; Acme's two contacts, its orders (through a
    contact, without one, a draft) and invoices (open, part paid, cancelled, a credit
    note); Jane's order and invoice."""
    site.put(customer_doc("Acme GmbH", email_id="ap@acme.example",
                          credit_limits=[{"company": "Wind Power LLC", "credit_limit": 5000.0}]))
    site.put(customer_doc("Globex AG", tax_id="DE999999999", payment_terms="Net 60"))
    site.put(customer_doc("Jane Doe", company=False, email_id="jane@example.com"))
    site.put(address_doc("Acme GmbH-Billing", customer="Acme GmbH"))
    site.put(contact_doc("Max Mustermann-Acme GmbH", "Max", "Mustermann", customer="Acme GmbH",
                         email="max@acme.example", designation="Purchasing"))
    site.put(contact_doc("Erika Muster-Acme GmbH", "Erika", "Muster", customer="Acme GmbH",
                         email="erika@acme.example", department="Accounts Payable"))
    site.put(contact_doc("Jane Doe", "Jane", "Doe", customer="Jane Doe", email="jane@example.com"))
    site.put(sales_order_doc("SAL-ORD-2024-00001", "Acme GmbH", contact="Max Mustermann-Acme GmbH"))
    site.put(sales_order_doc("SAL-ORD-2024-00002", "Acme GmbH", transaction_date="2024-03-03"))  # no contact
    site.put(sales_order_doc("SAL-ORD-2024-00003", "Jane Doe"))
    site.put(sales_order_doc("SAL-ORD-2024-00004", "Acme GmbH", docstatus=0))  # a draft: not an order yet
    site.put(sales_invoice_doc("ACC-SINV-2024-00001", "Acme GmbH", contact="Max Mustermann-Acme GmbH",
                               order="SAL-ORD-2024-00001"))  # open, 339.75
    site.put(sales_invoice_doc("ACC-SINV-2024-00002", "Acme GmbH", outstanding=100.0,
                               posting_date="2024-03-04"))  # part paid: 100.00 still owed
    site.put(sales_invoice_doc("ACC-SINV-2024-00003", "Acme GmbH", docstatus=2, status="Cancelled",
                               posting_date="2024-03-05"))  # cancelled: owes nothing
    site.put(sales_invoice_doc("ACC-SINV-2024-00004", "Acme GmbH", outstanding=-45.5, is_return=1,
                               return_against="ACC-SINV-2024-00002", grand_total=-45.5, total=-45.5,
                               total_taxes_and_charges=0.0, posting_date="2024-03-06",
                               items=[{"item_code": "SKU-SEAL-KIT", "item_name": "Seal kit", "qty": -1.0,
                                       "rate": 45.5, "amount": -45.5}]))  # a credit note
    site.put(sales_invoice_doc("ACC-SINV-2024-00005", "Jane Doe", outstanding=339.75))


def test_erpnext_books_arrive_in_the_360_and_follow_the_site(tenant, site):
    erp_books(site)
    cid = connect(tenant, "erpnext", erpnext_config(site))
    assert tenant.http.post(f"/v1/connections/{cid}/check").json()["ok"] is True
    first = sync(tenant, cid, "backfill")
    assert first["rejected"] == [], first["rejected"]
    assert counts(first) == {
        "customers": (3, 0, 0, 0),  # 2 accounts, 1 person
        "contacts": (2, 0, 0, 0),  # Jane's own contact is the customer's business: skipped
        "addresses": (0, 0, 1, 0),  # Acme again with its address: the customers stream wrote it
        "sales_orders": (3, 0, 0, 0),  # the draft is not read as an order
        "sales_invoices": (5, 0, 0, 0),
    }, first["streams"]
    assert first["rejected"] == [] and first["rejected_total"] == 0

    acme = lookup(tenant, "accounts", "erpnext", "Acme GmbH")
    assert (acme["name"], acme["tax_id"], acme["payment_terms"], acme["currency"]) == (
        "Acme GmbH", "DE811907980", "Net 30", "EUR")
    assert acme["credit_limit"] == 500000 and acme["email"] == "ap@acme.example" and acme["stub"] is False
    assert [(a["line1"], a["country"]) for a in acme["addresses"]] == [("Friedrichstraße 68", "DE")]
    # open 339.75 + part paid 100.00 − credit note 45.50; the cancelled invoice owes nothing
    assert acme["balance"] == {"EUR": 33975 + 10000 - 4550}
    globex = lookup(tenant, "accounts", "erpnext", "Globex AG")
    assert globex["balance"] == {} and globex["payment_terms"] == "Net 60"

    acme360 = view(tenant, acme["id"])
    roles = {c["email"]: c["role"] for c in acme360["contacts"]}
    assert roles == {"max@acme.example": "Purchasing", "erika@acme.example": "Accounts Payable"}
    orders = {o["external_id"]: o for o in acme360["recent_orders"]}
    assert set(orders) == {"SAL-ORD-2024-00001", "SAL-ORD-2024-00002"}
    max_id = lookup(tenant, "customers", "erpnext", "contact:Max Mustermann-Acme GmbH")["id"]
    assert orders["SAL-ORD-2024-00001"]["customer_id"] == max_id and orders["SAL-ORD-2024-00001"]["order_id"]
    assert orders["SAL-ORD-2024-00002"]["customer_id"] is None  # the company's own order: the account keeps it
    assert orders["SAL-ORD-2024-00002"]["total"] == 33975 and orders["SAL-ORD-2024-00002"]["status"] == "placed"
    invoices = {i["number"]: i for i in acme360["recent_invoices"]}
    assert {n: (i["status"], i["outstanding"]) for n, i in invoices.items()} == {
        "ACC-SINV-2024-00001": ("open", 33975), "ACC-SINV-2024-00002": ("open", 10000),
        "ACC-SINV-2024-00003": ("cancelled", 0), "ACC-SINV-2024-00004": ("open", -4550)}
    assert [i["number"] for i in acme360["recent_invoices"]] == [
        "ACC-SINV-2024-00004", "ACC-SINV-2024-00003", "ACC-SINV-2024-00002", "ACC-SINV-2024-00001"]  # newest first

    listed = tenant.http.get("/v1/invoices", params={"account_id": acme["id"], "status": "open"}).json()["data"]
    assert sorted(i["number"] for i in listed) == ["ACC-SINV-2024-00001", "ACC-SINV-2024-00002", "ACC-SINV-2024-00004"]
    sinv1 = next(i for i in listed if i["number"] == "ACC-SINV-2024-00001")
    assert sinv1["customer_id"] == max_id and sinv1["order_external_id"] == "SAL-ORD-2024-00001"
    assert sinv1["order_id"] == orders["SAL-ORD-2024-00001"]["order_id"]  # the order synced first: linked
    assert (sinv1["total"], sinv1["tax"], sinv1["payment_terms"]) == (33975, 5425, "Net 30")
    assert sinv1["due_at"] == "2024-03-31T18:30:00.000Z"  # the site's midnight (Asia/Kolkata) in UTC

    # a contact's own 360 names the account; Jane, a private customer, has her order and invoice
    max360 = tenant.http.get(f"/v1/customers/{max_id}/360").json()
    assert max360["account"] == {"id": acme["id"], "name": "Acme GmbH", "role": "Purchasing"}
    assert [o["external_id"] for o in tenant.http.get("/v1/orders", params={"customer_id": max_id}).json()["data"]] \
        == ["SAL-ORD-2024-00001"]
    jane = lookup(tenant, "customers", "erpnext", "Jane Doe")
    assert tenant.http.get(f"/v1/customers/{jane['id']}/360").json().get("account") is None
    [jane_invoice] = tenant.http.get("/v1/invoices", params={"customer_id": jane["id"]}).json()["data"]
    assert (jane_invoice["account_id"], jane_invoice["outstanding"]) == (None, 33975)

    # the site changes: an invoice paid, an order cancelled, Erika moves to Globex
    site.touch("Sales Invoice", "ACC-SINV-2024-00001", outstanding_amount=0.0, status="Paid")
    site.touch("Sales Order", "SAL-ORD-2024-00001", docstatus=2, status="Cancelled")
    site.touch("Contact", "Erika Muster-Acme GmbH", designation="Controller",
               links=[{"link_doctype": "Customer", "link_name": "Globex AG", "link_title": "Globex AG"}])
    second = sync(tenant, cid, "incremental")
    assert counts(second) == {
        "customers": (0, 0, 0, 0), "contacts": (0, 1, 0, 0), "addresses": (0, 0, 0, 0),
        "sales_orders": (0, 1, 0, 0), "sales_invoices": (0, 1, 0, 0)}, second["streams"]
    acme360 = view(tenant, acme["id"])
    assert acme360["account"]["balance"] == {"EUR": 10000 - 4550}
    assert {i["number"]: i["status"] for i in acme360["recent_invoices"]}["ACC-SINV-2024-00001"] == "paid"
    assert {o["external_id"]: o["status"] for o in acme360["recent_orders"]}["SAL-ORD-2024-00001"] == "cancelled"
    assert tenant.http.get(f"/v1/orders/{orders['SAL-ORD-2024-00001']['order_id']}").json()["status"] == "cancelled"
    assert [c["email"] for c in acme360["contacts"]] == ["max@acme.example"]
    globex360 = view(tenant, globex["id"])
    assert [(c["email"], c["role"]) for c in globex360["contacts"]] == [("erika@acme.example", "Controller")]
    erika = lookup(tenant, "customers", "erpnext", "contact:Erika Muster-Acme GmbH")
    assert tenant.http.get(f"/v1/customers/{erika['id']}/360").json()["account"]["name"] == "Globex AG"
    paid = tenant.http.get("/v1/invoices", params={"account_id": acme["id"], "status": "paid"}).json()["data"]
    assert [(i["number"], i["outstanding"]) for i in paid] == [("ACC-SINV-2024-00001", 0)]
    # nothing duplicated: one account per company, one invoice per document
    assert len(tenant.http.get("/v1/accounts").json()["data"]) == 2
    assert len(tenant.http.get("/v1/invoices", params={"account_id": acme["id"]}).json()["data"]) == 4

    # the same backfill again: every record read, none written
    again = sync(tenant, cid, "backfill")
    assert counts(again) == {
        "customers": (0, 0, 3, 0), "contacts": (0, 0, 2, 0), "addresses": (0, 0, 1, 0),
        "sales_orders": (0, 0, 3, 0), "sales_invoices": (0, 0, 5, 0)}, again["streams"]
    assert lookup(tenant, "accounts", "erpnext", "Acme GmbH")["balance"] == {"EUR": 10000 - 4550}


def test_erpnext_records_it_cannot_write_are_rejected_with_a_reason(tenant, site):
    """An invoice in a currency that is no ISO code and an order whose grand total does not
    add up are rejected, each with the figures to fix at the site; nothing of them is written."""
    site.put(customer_doc("Initech GmbH"))
    site.put(sales_invoice_doc("ACC-SINV-2024-00010", "Initech GmbH", currency="EURO"))
    site.put(sales_order_doc("SAL-ORD-2024-00010", "Initech GmbH", discount_amount=-10.0, grand_total=349.75))
    cid = connect(tenant, "erpnext", erpnext_config(site))
    run = sync(tenant, cid, "backfill")
    assert counts(run)["sales_invoices"] == (0, 0, 0, 1) and counts(run)["sales_orders"] == (0, 0, 0, 1)
    reasons = {r["external_id"]: r["reason"] for r in run["rejected"]}
    assert "ISO 4217" in reasons["ACC-SINV-2024-00010"] and "EURO" in reasons["ACC-SINV-2024-00010"]
    assert "grand_total 349.75 EUR does not reconcile" in reasons["SAL-ORD-2024-00010"]
    assert run["rejected_total"] == 2
    initech = lookup(tenant, "accounts", "erpnext", "Initech GmbH")
    assert initech["balance"] == {} and view(tenant, initech["id"])["recent_orders"] == []
    assert tenant.http.get("/v1/invoices", params={"account_id": initech["id"]}).json()["data"] == []


# Odoo -------------------------------------------------------------------------------------


@pytest.fixture
def odoo_server():
    with FakeOdoo("json2") as fake:
        yield fake


def odoo_books(fake: FakeOdoo) -> dict[str, int]:
    """Two companies; Nordlicht's two contacts and delivery address, a lone person; orders
    (a contact's, the company's own cancelled one, a quotation, the person's in USD) and
    invoices (part paid, paid, a credit note, a vendor bill)."""
    ids = {"company": fake.add_company("Nordlicht Möbel GmbH", vat="DE811907980", street="Hafenstraße 4",
                                       city="Hamburg", zip="20457", country_id=2, credit_limit=15000.0,
                                       property_payment_term_id=2, email="einkauf@nordlicht.example")}
    ids["other"] = fake.add_company("Kranich Logistik AG", country_id=2, property_payment_term_id=3)
    ids["buyer"] = fake.add_person("Greta Sommer", parent=ids["company"], function="Purchasing",
                                   email="greta@nordlicht.example")
    ids["payables"] = fake.add_person("Jonas Brandt", parent=ids["company"], function="Accounts Payable",
                                      email="jonas@nordlicht.example")
    fake.add_person("Warehouse", parent=ids["company"], type="delivery", street="Kai 9")  # an address, no one
    ids["person"] = fake.add_person("Maya Lindqvist", email="maya@mail.example", street="1 Ferry Building",
                                    city="San Francisco", zip="94111", country_id=3)
    ids["order"] = fake.add_order(ids["buyer"])  # 2 × 499.00 + 189.50, 21 % tax: 1,436.88
    ids["own"] = fake.add_order(ids["company"], state="cancel")
    fake.add_order(ids["buyer"], state="draft")  # a quotation: an offer, not an order
    ids["usd"] = fake.add_order(ids["person"], [(4, 3, 35.0)], currency=2, tax_rate=0.0)
    ids["open"] = fake.add_invoice(ids["buyer"], 1187.5, residual=436.88, payment_state="partial")
    ids["paid"] = fake.add_invoice(ids["company"], 200.0, payment_state="paid", residual=0.0)
    ids["refund"] = fake.add_invoice(ids["company"], 100.0, move_type="out_refund")  # 121.00 owed back
    fake.add_move("in_invoice", ids["company"])  # a vendor bill: not a customer invoice
    return ids


def test_odoo_books_arrive_in_the_360_and_follow_the_database(tenant, odoo_server):
    fake = odoo_server
    ids = odoo_books(fake)
    cid = connect(tenant, "odoo", {"base_url": fake.url, "database": DATABASE, "api_key": API_KEY})
    assert tenant.http.post(f"/v1/connections/{cid}/check").json()["ok"] is True
    first = sync(tenant, cid, "backfill")
    assert first["rejected"] == [], first["rejected"]
    assert counts(first) == {"partners": (5, 0, 0, 0), "sale_orders": (3, 0, 0, 0), "invoices": (3, 0, 0, 0)}

    nordlicht = lookup(tenant, "accounts", "odoo", str(ids["company"]))
    assert (nordlicht["name"], nordlicht["tax_id"], nordlicht["payment_terms"], nordlicht["credit_limit"]) == (
        "Nordlicht Möbel GmbH", "DE811907980", "30 Days", 1500000)
    assert nordlicht["balance"] == {"EUR": 43688 - 12100}  # part paid − the credit note; paid owes nothing
    view1 = view(tenant, nordlicht["id"])
    assert {c["email"]: c["role"] for c in view1["contacts"]} == {
        "greta@nordlicht.example": "Purchasing", "jonas@nordlicht.example": "Accounts Payable"}
    orders = {o["external_id"]: o for o in view1["recent_orders"]}
    assert set(orders) == {str(ids["order"]), str(ids["own"])}
    greta = lookup(tenant, "customers", "odoo", str(ids["buyer"]))
    assert orders[str(ids["order"])]["customer_id"] == greta["id"] and orders[str(ids["order"])]["total"] == 143688
    # the company's own order: the account keeps it; no person is made of the company's email
    assert orders[str(ids["own"])]["customer_id"] is None and orders[str(ids["own"])]["status"] == "cancelled"
    assert tenant.http.get("/v1/customers/lookup", params={"email": "einkauf@nordlicht.example"}).json()["data"] == []
    invoices = {i["number"]: (i["status"], i["outstanding"]) for i in view1["recent_invoices"]}
    assert invoices == {f"INV/2024/{ids['open']:05d}": ("open", 43688), f"INV/2024/{ids['paid']:05d}": ("paid", 0),
                        f"RINV/2024/{ids['refund']:05d}": ("open", -12100)}
    assert tenant.http.get(f"/v1/customers/{greta['id']}/360").json()["account"] == {
        "id": nordlicht["id"], "name": "Nordlicht Möbel GmbH", "role": "Purchasing"}
    [greta_invoice] = tenant.http.get("/v1/invoices", params={"customer_id": greta["id"]}).json()["data"]
    assert greta_invoice["account_id"] == nordlicht["id"] and greta_invoice["payment_terms"] == "30 Days"
    maya = lookup(tenant, "customers", "odoo", str(ids["person"]))
    [usd] = tenant.http.get("/v1/orders", params={"customer_id": maya["id"]}).json()["data"]
    assert (usd["currency"], usd["total"], usd.get("account_id")) == ("USD", 10500, None)

    # the database changes: the open invoice paid, Greta's order cancelled, Jonas moves to Kranich
    fake.touch("account.move", ids["open"], payment_state="paid", amount_residual=0.0)
    fake.touch("sale.order", ids["order"], state="cancel")
    fake.touch("res.partner", ids["payables"], parent_id=ids["other"], function="Controller")
    second = sync(tenant, cid, "incremental")
    assert counts(second) == {"partners": (0, 1, 0, 0), "sale_orders": (0, 1, 0, 0), "invoices": (0, 1, 0, 0)}
    view2 = view(tenant, nordlicht["id"])
    assert view2["account"]["balance"] == {"EUR": -12100}  # only the credit note is left: owed back
    assert {i["number"]: i["status"] for i in view2["recent_invoices"]}[f"INV/2024/{ids['open']:05d}"] == "paid"
    assert {o["external_id"]: o["status"] for o in view2["recent_orders"]}[str(ids["order"])] == "cancelled"
    assert [c["email"] for c in view2["contacts"]] == ["greta@nordlicht.example"]
    kranich = lookup(tenant, "accounts", "odoo", str(ids["other"]))
    assert [(c["email"], c["role"]) for c in view(tenant, kranich["id"])["contacts"]] == [
        ("jonas@nordlicht.example", "Controller")]
    assert len(tenant.http.get("/v1/accounts").json()["data"]) == 2
    assert len(tenant.http.get("/v1/invoices").json()["data"]) == 3

    again = sync(tenant, cid, "backfill")
    assert counts(again) == {"partners": (0, 0, 5, 0), "sale_orders": (0, 0, 3, 0), "invoices": (0, 0, 3, 0)}
    assert lookup(tenant, "accounts", "odoo", str(ids["company"]))["balance"] == {"EUR": -12100}


# ERPNext webhooks: hints that re-read ------------------------------------------------------


# what a webhook could write: the records of the sink, their guards and the delivery guard
# (not the aggregates the pipeline's own schedules recompute from the clock: RFM, segments)
WRITTEN = {"customer", "event", "guard", "order", "order_pointer", "recent_orders", "identity_conflict", "account",
           "account_summary", "account_contact", "account_order", "invoice", "account_invoice", "customer_invoice",
           "account_guard", "hook_delivery"}


def stored(raw_table, tenant) -> list[dict]:
    from tests.conftest import partition_items

    return [i for i in partition_items(raw_table, tenant) if i.get("kind") in WRITTEN]


def hook(site: FakeFrappe, doctype: str, name: str, secret: str = HOOK_SECRET) -> tuple[dict, bytes]:
    """A delivery as the documented webhook sends it: ``{"doctype", "name", "modified"}``."""
    return site.webhook(doctype, name, secret, modified=site.docs[doctype][name]["modified"])


def test_an_erpnext_invoice_webhook_is_a_hint_the_worker_confirms(tenant, site, anon, raw_table, event_pipeline):
    erp_books(site)
    cid = connect(tenant, "erpnext", erpnext_config(site))
    assert sync(tenant, cid, "backfill", queued=True)["status"] == "succeeded"
    globex = lookup(tenant, "accounts", "erpnext", "Globex AG")
    site.put(sales_invoice_doc("ACC-SINV-2024-00020", "Globex AG", outstanding=120.0, posting_date="2024-03-10"))

    # forged (another secret) or unsigned: 401, nothing written
    assert event_pipeline.wait_idle(timeout=60)
    before = stored(raw_table, tenant)
    headers, body = hook(site, "Sales Invoice", "ACC-SINV-2024-00020", secret="not-the-secret")
    r = anon.post(f"/v1/hooks/{cid}", headers=headers, content=body)
    assert r.status_code == 401 and r.json()["code"] == "invalid_signature"
    r = anon.post(f"/v1/hooks/{cid}", headers={"Content-Type": "application/json"}, content=body)
    assert r.status_code == 401
    assert event_pipeline.wait_idle(timeout=60)
    assert stored(raw_table, tenant) == before

    # signed: 202 at once; the worker reads the invoice again from the site and writes that
    headers, body = hook(site, "Sales Invoice", "ACC-SINV-2024-00020")
    r = anon.post(f"/v1/hooks/{cid}", headers=headers, content=body)
    assert r.status_code == 202 and r.json()["status"] == "queued", r.text
    assert event_pipeline.wait_idle(timeout=60)
    [new] = [i for i in tenant.http.get("/v1/invoices", params={"account_id": globex["id"]}).json()["data"]]
    assert (new["number"], new["status"], new["outstanding"]) == ("ACC-SINV-2024-00020", "open", 12000)
    assert lookup(tenant, "accounts", "erpnext", "Globex AG")["balance"] == {"EUR": 12000}
    assert [i["number"] for i in view(tenant, globex["id"])["recent_invoices"]] == ["ACC-SINV-2024-00020"]

    # the same delivery again: acknowledged as a duplicate, nothing written
    before = stored(raw_table, tenant)
    r = anon.post(f"/v1/hooks/{cid}", headers=headers, content=body)
    assert r.status_code == 200 and r.json()["status"] == "duplicate"
    assert event_pipeline.wait_idle(timeout=60)
    assert stored(raw_table, tenant) == before

    # the invoice is paid at the site: its next delivery names the new `modified`, so it is
    # not taken for a replay, and the re-read brings the payment
    site.touch("Sales Invoice", "ACC-SINV-2024-00020", outstanding_amount=0.0, status="Paid")
    headers, body = hook(site, "Sales Invoice", "ACC-SINV-2024-00020")
    assert anon.post(f"/v1/hooks/{cid}", headers=headers, content=body).status_code == 202
    assert event_pipeline.wait_idle(timeout=60)
    paid = tenant.http.get(f"/v1/invoices/{new['id']}").json()
    assert (paid["status"], paid["outstanding"]) == ("paid", 0)
    assert lookup(tenant, "accounts", "erpnext", "Globex AG")["balance"] == {}

    # an old delivery replayed under new bytes (a signed body claiming an older state):
    # the re-read writes the site's current state, never the body's
    headers, body = site.webhook("Sales Invoice", "ACC-SINV-2024-00020", HOOK_SECRET,
                                 body={"doctype": "Sales Invoice", "name": "ACC-SINV-2024-00020",
                                       "modified": "2024-03-01 00:00:00", "outstanding_amount": 120.0})
    assert anon.post(f"/v1/hooks/{cid}", headers=headers, content=body).status_code == 202
    assert event_pipeline.wait_idle(timeout=60)
    assert tenant.http.get(f"/v1/invoices/{new['id']}").json()["status"] == "paid"

    # a delivery for an account and one for a contact land where the sync puts them
    site.touch("Customer", "Globex AG", payment_terms="Net 90")
    site.put(contact_doc("Hank Scorpio-Globex AG", "Hank", "Scorpio", customer="Globex AG",
                         email="hank@globex.example", designation="CEO"))
    for doctype, name in (("Customer", "Globex AG"), ("Contact", "Hank Scorpio-Globex AG")):
        headers, body = hook(site, doctype, name)
        assert anon.post(f"/v1/hooks/{cid}", headers=headers, content=body).status_code == 202
    assert event_pipeline.wait_idle(timeout=60)
    globex360 = view(tenant, globex["id"])
    assert globex360["account"]["payment_terms"] == "Net 90"
    assert [(c["email"], c["role"]) for c in globex360["contacts"]] == [("hank@globex.example", "CEO")]
    # and none of that made a second account or invoice
    assert len(tenant.http.get("/v1/accounts").json()["data"]) == 2
    assert len(tenant.http.get("/v1/invoices", params={"account_id": globex["id"]}).json()["data"]) == 1


def test_a_webhook_the_site_cannot_confirm_writes_nothing_and_logs_why(tenant, site, raw_table, monkeypatch):
    """The worker's side of a delivery (functions/sync.py ``hook``), run in process: the
    re-read fails (the site answers 503), so nothing is written and the note is logged;
    records of every kind are written and reported under their own stream."""
    from connectors import messages
    from functions import sync as worker
    from tests.conftest import partition_items

    erp_books(site)
    cid = connect(tenant, "erpnext", erpnext_config(site))
    logged: list[tuple[str, dict]] = []

    class Recorder:
        def info(self, msg, extra=None):
            logged.append((msg, extra or {}))

        warning = info

    monkeypatch.setattr(worker, "logger", lambda: Recorder())
    headers, body = hook(site, "Sales Invoice", "ACC-SINV-2024-00001")
    message = messages.hook_message(tenant.id, cid, "sha256:test", {k.lower(): v for k, v in headers.items()}, body)
    before = partition_items(raw_table, tenant)
    site.fail_next(1, status=503)
    assert worker.hook(message) == {}
    assert partition_items(raw_table, tenant) == before
    [(msg, extra)] = logged
    assert msg == "webhook delivery note" and extra["topic"] == "Sales Invoice" and extra["records"] == 0
    assert "could not read Sales Invoice ACC-SINV-2024-00001 again" in extra["note"] and extra["connection_id"] == cid

    # the site answers again: the invoice, its stub account and its buyer are written
    logged.clear()
    counts_ = worker.hook(message)
    assert counts_["created"] == 1 and counts_["rejected"] == 0 and logged == []
    acme = lookup(tenant, "accounts", "erpnext", "Acme GmbH")
    assert acme["stub"] is True and acme["balance"] == {"EUR": 33975}  # the account's own record follows
    # a body set up without "modified" still works once, and the log says what to fix
    logged.clear()
    headers, body = site.webhook("Sales Invoice", "ACC-SINV-2024-00001", HOOK_SECRET)
    worker.hook(messages.hook_message(tenant.id, cid, "sha256:bare", headers, body))
    [(msg, extra)] = logged
    assert extra["records"] == 1 and '"modified": "{{ doc.modified }}"' in extra["note"]
    # a record the sink refuses is logged with its reason
    logged.clear()
    site.touch("Sales Invoice", "ACC-SINV-2024-00002", currency="EURO")
    headers, body = hook(site, "Sales Invoice", "ACC-SINV-2024-00002")
    worker.hook(messages.hook_message(tenant.id, cid, "sha256:test2", headers, body))
    [(msg, extra)] = logged
    assert msg == "webhook record not written" and extra["stream"] == extra["topic"] == "Sales Invoice"
    assert extra["external_id"] == "ACC-SINV-2024-00002" and "ISO 4217" in extra["reason"]
    # an invoice the sink refuses is reported under the invoices it is
    logged.clear()
    site.put(sales_invoice_doc("ACC-SINV-2024-00030", None))  # names no customer: it would belong to no one
    headers, body = hook(site, "Sales Invoice", "ACC-SINV-2024-00030")
    assert worker.hook(messages.hook_message(tenant.id, cid, "sha256:test3", headers, body))["rejected"] == 1
    [(msg, extra)] = logged
    assert extra["stream"] == "invoices" and "belong to no one" in extra["reason"]


# merge, erasure and export after a real sync ---------------------------------------------


def test_a_synced_contact_merged_erased_and_exported_keeps_the_declared_rules(tenant, site):
    """What a sync adds to tests/integration/test_accounts_lifecycle.py: the link and the
    invoices were written by the connector (source erpnext, vendor stamps), and the next
    syncs must respect what merge and erasure did."""
    import connectors.erasure  # noqa: F401  (registers the connectors' erasure hooks, as functions/erasure.py)
    from crm.customers import service

    erp_books(site)
    cid = connect(tenant, "erpnext", erpnext_config(site))
    sync(tenant, cid, "backfill")
    acme = lookup(tenant, "accounts", "erpnext", "Acme GmbH")
    synced = lookup(tenant, "customers", "erpnext", "contact:Max Mustermann-Acme GmbH")

    # merge: Max, known before under his private email, absorbs the synced contact
    survivor = tenant.create_customer(email="max.private@example.com", name={"given": "Max"})["id"]
    r = tenant.http.post(f"/v1/customers/{survivor}/merge", json={"other_id": synced["id"]})
    assert r.status_code == 200, r.text
    merged = tenant.http.get(f"/v1/customers/{survivor}").json()
    assert (merged["account_id"], merged["account_role"]) == (acme["id"], "Purchasing")
    assert merged["external_ids"]["erpnext"] == "contact:Max Mustermann-Acme GmbH"
    assert {c["customer_id"] for c in view(tenant, acme["id"])["contacts"]} == {
        survivor, lookup(tenant, "customers", "erpnext", "contact:Erika Muster-Acme GmbH")["id"]}
    mine = tenant.http.get("/v1/invoices", params={"customer_id": survivor}).json()["data"]
    assert [i["number"] for i in mine] == ["ACC-SINV-2024-00001"]
    # the site changes Max's role: the next sync finds the survivor, makes no one new
    site.touch("Contact", "Max Mustermann-Acme GmbH", designation="Head of Purchasing")
    run = sync(tenant, cid, "incremental")
    assert counts(run)["contacts"] == (0, 1, 0, 0) and run["rejected"] == []
    assert lookup(tenant, "customers", "erpnext", "contact:Max Mustermann-Acme GmbH")["id"] == survivor
    assert tenant.http.get(f"/v1/customers/{survivor}").json()["account_role"] == "Head of Purchasing"
    assert len([c for c in view(tenant, acme["id"])["contacts"] if c["email"] and "max" in c["email"]]) == 1

    # export: the profile's account link and the invoices the sync wrote
    page = tenant.http.get(f"/v1/customers/{survivor}/export").json()
    assert (page["profile"]["account_id"], page["profile"]["account_role"]) == (acme["id"], "Head of Purchasing")
    assert [i["data"]["number"] for i in page["sections"]["invoices"]] == ["ACC-SINV-2024-00001"]

    # erasure: the link goes, the invoice stays (a financial record); the account is untouched
    assert tenant.http.delete(f"/v1/customers/{survivor}").status_code == 200
    service.finish_erasure(tenant.ctx, survivor)
    assert survivor not in {c["customer_id"] for c in view(tenant, acme["id"])["contacts"]}
    assert [i["number"] for i in tenant.http.get("/v1/invoices", params={"customer_id": survivor}).json()["data"]] \
        == ["ACC-SINV-2024-00001"]
    assert lookup(tenant, "accounts", "erpnext", "Acme GmbH")["balance"] == acme["balance"]
    # Max is still a contact at the site: the next backfill brings him back as a new
    # customer (erase him at the ERP too, docs/accounts.md); his old order stays with the
    # erased customer and the run says so, naming both
    again = sync(tenant, cid, "backfill")
    assert counts(again)["contacts"] == (1, 0, 1, 0)
    back = lookup(tenant, "customers", "erpnext", "contact:Max Mustermann-Acme GmbH")
    assert back["id"] != survivor and back["account_id"] == acme["id"]
    [kept] = again["rejected"]
    assert kept["external_id"] == "SAL-ORD-2024-00001" and survivor in kept["reason"] and back["id"] in kept["reason"]
