"""The ERPNext connector against a fake Frappe site over HTTP (tests/fakes/erpnext.py):
every stream through the SDK, keyset paging over ties bigger than a page, resuming from
every checkpoint, check() reasons, throttling and server errors, and webhooks as hints."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from connectors.erpnext import Addresses, Contacts, Customers, ERPNext, ERPNextConfig, SalesInvoices, SalesOrders
from connectors.sdk import CheckFailed, VendorError, WebhookRejected
from connectors.sdk.base import AccountRecord, CustomerRecord, InvoiceRecord, OrderRecord, ReadContext
from tests.connector_helpers import Sleeps, as_order_create, read_stream
from tests.fakes.erpnext import (
    KEY,
    SECRET,
    FakeFrappe,
    address_doc,
    contact_doc,
    customer_doc,
    sales_invoice_doc,
    sales_order_doc,
)

HOOK_SECRET = "frappe-webhook-secret"
TIE = datetime(2024, 3, 2, 12, 0, 0, 500000)  # one `modified` shared by more documents than a page


@pytest.fixture
def site():
    with FakeFrappe() as fake:
        yield fake


def config(fake: FakeFrappe, **changes) -> ERPNextConfig:
    return ERPNextConfig(base_url=fake.url, api_key=fake.key, api_secret=fake.secret, webhook_secret=HOOK_SECRET,
                         **changes)


def context(fake: FakeFrappe, mode: str = "incremental", **changes) -> tuple[ReadContext, Sleeps]:
    cfg = config(fake, **changes)
    sleeps = Sleeps()
    return ReadContext(cfg, ERPNext().client(cfg, sleep=sleeps), mode), sleeps


def b2b(fake: FakeFrappe) -> None:
    """A company with a contact, an address, an order and an invoice; an individual with an order."""
    fake.put(customer_doc("Acme GmbH", email_id="buyer@acme.example"))
    fake.put(customer_doc("Jane Doe", company=False, email_id="jane@example.com"))
    fake.put(address_doc("Acme GmbH-Billing", customer="Acme GmbH"))
    fake.put(contact_doc("Max Mustermann-Acme GmbH", "Max", "Mustermann", customer="Acme GmbH",
                         email="max@acme.example", designation="Purchasing"))
    fake.put(contact_doc("Jane Doe", "Jane", "Doe", customer="Jane Doe", email="jane@example.com"))
    fake.put(sales_order_doc("SAL-ORD-2024-00001", "Acme GmbH", contact="Max Mustermann-Acme GmbH"))
    fake.put(sales_order_doc("SAL-ORD-2024-00002", "Jane Doe"))
    fake.put(sales_order_doc("SAL-ORD-2024-00003", "Jane Doe", docstatus=0))  # a draft
    fake.put(sales_invoice_doc("ACC-SINV-2024-00001", "Acme GmbH", order="SAL-ORD-2024-00001"))


def list_calls(fake: FakeFrappe, doctype: str) -> list[dict]:
    return [c for c in fake.doc_calls if c["path"] == f"/api/resource/{doctype}"]


# every stream ---------------------------------------------------------------------------


def test_every_stream_reads_the_b2b_documents(site):
    b2b(site)
    rc, _ = context(site, "backfill")
    customers, _, _ = read_stream(Customers, rc)
    account = next(r for r in customers if r.external_id == "Acme GmbH")
    assert isinstance(account, AccountRecord)
    assert account.profile["addresses"][0]["country"] == "DE"  # Country "Germany" → its code
    person = next(r for r in customers if r.external_id == "Jane Doe")
    assert isinstance(person, CustomerRecord) and person.profile["email"] == "jane@example.com"

    contacts, _, _ = read_stream(Contacts, rc)
    # the individual's own contact is not a company's person: only Max
    assert [(c.external_id, c.account, c.role) for c in contacts] == [
        ("contact:Max Mustermann-Acme GmbH", "Acme GmbH", "Purchasing")]

    addresses, _, _ = read_stream(Addresses, rc)
    assert [(r.external_id, r.profile["addresses"]) for r in addresses] == [
        ("Acme GmbH", account.profile["addresses"])]
    assert addresses[0].updated_at == account.updated_at  # the same record by either stream

    orders, _, _ = read_stream(SalesOrders, rc)
    assert [(o.external_id, o.account, o.customer.external_id) for o in orders] == [
        ("SAL-ORD-2024-00001", "Acme GmbH", "contact:Max Mustermann-Acme GmbH"),
        ("SAL-ORD-2024-00002", None, "Jane Doe")]  # the draft is skipped
    for o in orders:
        as_order_create(o, "erpnext")

    invoices, _, _ = read_stream(SalesInvoices, rc)
    assert [(i.external_id, i.account, i.outstanding, i.order) for i in invoices] == [
        ("ACC-SINV-2024-00001", "Acme GmbH", 33975, "SAL-ORD-2024-00001")]


def test_requests_carry_the_token_explicit_fields_and_keyset_filters_never_an_offset(site):
    b2b(site)
    rc, _ = context(site, "backfill")
    for stream in (Customers, Contacts, Addresses, SalesOrders, SalesInvoices):
        read_stream(stream, rc)
    assert all(c["headers"].get("authorization") == f"token {KEY}:{SECRET}" for c in site.doc_calls)
    lists = [c for c in site.doc_calls if c["path"].startswith("/api/resource/")]
    assert lists and all("limit_start" not in c["query"] for c in lists)
    assert all(json.loads(c["query"]["fields"]) != ["*"] for c in lists)
    orders = list_calls(site, "Sales Order")
    assert orders[0]["query"]["order_by"] == "modified asc, name asc"
    assert orders[0]["query"]["limit_page_length"] == "100" and json.loads(orders[0]["query"]["filters"]) == []
    # then an inclusive bound on the last modified read, never an offset
    assert json.loads(orders[1]["query"]["filters"])[0][:2] == ["modified", ">="]
    # child tables: one listing of the child DocType for the page, not one GET per order
    items = list_calls(site, "Sales Order Item")
    assert len(items) == 1 and items[0]["query"]["parent"] == "Sales Order"
    assert not [c for c in site.doc_calls if c["path"].startswith("/api/resource/Sales Order/")]


def test_site_time_zone_is_asked_unless_configured(site):
    site.put(customer_doc("Acme GmbH"), modified=datetime(2024, 3, 1, 10, 0, 0, 250000))
    rc, _ = context(site, "backfill")
    records, state, _ = read_stream(Customers, rc)
    assert records[0].updated_at == "2024-03-01T04:30:00.250Z"  # 10:00 in Kolkata
    assert state["cursor"] == "2024-03-01T04:30:00.250Z"
    assert sum(c["path"].endswith("get_time_zone") for c in site.doc_calls) == 1
    site.doc_calls.clear()
    rc, _ = context(site, "backfill", time_zone="UTC")
    records, _, _ = read_stream(Customers, rc)
    assert records[0].updated_at == "2024-03-01T10:00:00.250Z"
    assert not [c for c in site.doc_calls if c["path"].endswith("get_time_zone")]
    with pytest.raises(ValidationError, match="IANA"):
        config(site, time_zone="Mars/Olympus")


# paging ----------------------------------------------------------------------------------


def seed_tie(fake: FakeFrappe) -> list[str]:
    """40 before, 250 sharing one modified (2.5 pages), 30 after."""
    before = [fake.put(customer_doc(f"A{i:03d}"), TIE - timedelta(seconds=100 - i))["name"] for i in range(40)]
    tie = fake.seed_customers(250, modified=TIE, prefix="Tie")
    after = [fake.put(customer_doc(f"Z{i:03d}"), TIE + timedelta(seconds=i + 1))["name"] for i in range(30)]
    return before + tie + after


@pytest.mark.parametrize("cap", [None, 30])
def test_ties_bigger_than_a_page_lose_and_repeat_nothing(site, cap):
    """``cap``: the site returns fewer rows than asked (a proxy's limit): still nothing lost."""
    names = seed_tie(site)
    site.max_page_length = cap
    rc, _ = context(site, "backfill")
    records, state, _ = read_stream(Customers, rc)
    ids = [r.external_id for r in records]
    assert sorted(ids) == sorted(names) and len(ids) == len(set(ids))
    ties = [json.loads(c["query"]["filters"]) for c in list_calls(site, "Customer")
            if any(f[:2] == ["name", ">"] for f in json.loads(c["query"]["filters"]))]
    assert ties and all(f[0][:2] == ["modified", "="] for f in ties)  # the tie broken by name within it
    assert state["cursor"] == "2024-03-02T06:30:30.500Z" and state["page"] is None


def test_resume_from_every_checkpoint_reads_the_rest_exactly_once(site):
    names = seed_tie(site)
    rc, _ = context(site, "backfill")
    # each checkpoint as the runner stores it: JSON, written when the page is yielded
    pages = [(page.records, json.loads(json.dumps(page.state))) for page in Customers().read(rc, {})]
    assert len(pages) > 5
    for k, (_, checkpoint) in enumerate(pages[:-1]):
        before = [r.external_id for records, _ in pages[: k + 1] for r in records]
        rest, state, _ = read_stream(Customers, context(site)[0], checkpoint)
        after = [r.external_id for r in rest]
        assert sorted(before + after) == sorted(names), f"resumed after page {k}"
        assert len(before + after) == len(names), f"duplicates after page {k}"
        assert state["page"] is None


def test_incremental_reads_only_what_changed_even_at_the_boundary(site):
    names = seed_tie(site)
    rc, _ = context(site)
    _, state, _ = read_stream(Customers, rc)
    again, state2, _ = read_stream(Customers, context(site)[0], state)
    assert again == []  # the overlap is re-read and skipped by (name, modified)
    site.touch("Customer", names[100], customer_name="Tie Renamed GmbH")
    site.put(customer_doc("New AG"), modified=TIE + timedelta(seconds=30))  # at the cursor's own second
    changed, _, _ = read_stream(Customers, context(site)[0], state2)
    assert sorted((r.external_id, r.profile["name"]) for r in changed) == [
        ("New AG", "New AG"), (names[100], "Tie Renamed GmbH")]


def test_a_document_changed_during_the_read_is_not_lost(site):
    names = [site.put(customer_doc(f"C{i:03d}"))["name"] for i in range(150)]
    rc, _ = context(site, "backfill")
    seen = []
    for n, page in enumerate(Customers().read(rc, {})):
        seen += [r.external_id for r in page.records]
        if n == 0:  # an already-read document and a not-yet-read one change meanwhile
            site.touch("Customer", names[3], customer_name="Moved Early")
            site.touch("Customer", names[140], customer_name="Moved Late")
    assert set(seen) == set(names)
    assert seen.count(names[3]) == 2 and seen.count(names[140]) == 1


def test_address_change_brings_the_customer_with_all_its_addresses(site):
    b2b(site)
    site.put(address_doc("Acme GmbH-Shipping", customer="Acme GmbH", line1="Am Hafen 3", city="Hamburg",
                         address_type="Shipping", is_primary_address=0))
    rc, _ = context(site)
    _, state, _ = read_stream(Addresses, rc)
    site.touch("Address", "Acme GmbH-Billing", disabled=1)
    records, _, _ = read_stream(Addresses, context(site)[0], state)
    assert [(r.external_id, [a["line1"] for a in r.profile["addresses"]]) for r in records] == [
        ("Acme GmbH", ["Am Hafen 3"])]
    assert records[0].profile["name"] == "Acme GmbH"  # the whole customer, not a bare address patch


def test_cancelled_documents_cancel_what_they_created(site):
    b2b(site)
    rc, _ = context(site)
    _, orders_state, _ = read_stream(SalesOrders, rc)
    _, invoices_state, _ = read_stream(SalesInvoices, rc)
    site.touch("Sales Order", "SAL-ORD-2024-00002", docstatus=2, status="Cancelled")
    site.touch("Sales Invoice", "ACC-SINV-2024-00001", docstatus=2, status="Cancelled")
    (order,), _, _ = read_stream(SalesOrders, context(site)[0], orders_state)
    assert isinstance(order, OrderRecord) and order.cancelled_at == order.updated_at
    (invoice,), _, _ = read_stream(SalesInvoices, context(site)[0], invoices_state)
    assert isinstance(invoice, InvoiceRecord) and (invoice.status, invoice.outstanding) == ("cancelled", 0)


# errors ----------------------------------------------------------------------------------


def test_check_gives_reasons_a_tenant_can_act_on(site):
    b2b(site)
    connector = ERPNext()
    cfg = config(site)
    connector.check(cfg, connector.client(cfg))
    wrong = config(site).model_copy(update={"api_secret": "not-the-secret"})
    with pytest.raises(CheckFailed, match="refused the API key and secret") as exc:
        connector.check(wrong, connector.client(wrong))
    assert exc.value.kind == "auth" and "not-the-secret" not in str(exc.value)
    site.deny("Sales Invoice")
    with pytest.raises(CheckFailed, match="may not read Sales Invoice") as exc:
        connector.check(cfg, connector.client(cfg))
    assert exc.value.kind == "auth"
    elsewhere = config(site).model_copy(update={"base_url": site.url + "/shop"})
    with pytest.raises(CheckFailed, match="no Frappe site") as exc:
        connector.check(elsewhere, connector.client(elsewhere))
    assert exc.value.kind == "config"
    site.denied.clear()
    site.time_zone = None
    with pytest.raises(CheckFailed, match="time_zone") as exc:
        connector.check(cfg, connector.client(cfg))
    connector.check(config(site, time_zone="Asia/Kolkata"), connector.client(cfg))


def test_a_denied_doctype_during_a_read_names_it(site):
    b2b(site)
    site.deny("Sales Order Item")
    with pytest.raises(VendorError, match="may not read Sales Order Item") as exc:
        read_stream(SalesOrders, context(site, "backfill")[0])
    assert exc.value.kind == "auth"


def test_throttling_and_server_errors_are_waited_out_then_reported(site):
    b2b(site)
    rc, sleeps = context(site, "backfill")
    site.throttle_next(2, retry_after=3)
    site.fail_next(2, status=502)
    records, _, _ = read_stream(SalesOrders, rc)
    assert len(records) == 2
    assert site.throttled == 2 and site.failed == 2 and sleeps[:2] == [3.0, 3.0]
    site.fail_next(10, status=500)
    with pytest.raises(VendorError) as exc:
        read_stream(SalesOrders, context(site, "backfill")[0])
    assert exc.value.kind == "vendor" and exc.value.status == 500


# webhooks ----------------------------------------------------------------------------------


def test_webhook_signature_is_verified_before_anything_else(site):
    connector, cfg = ERPNext(), config(site)
    headers, body = site.webhook("Customer", "Acme GmbH", HOOK_SECRET)
    connector.verify_webhook(cfg, headers, body)
    connector.verify_webhook(cfg, {k.lower(): v for k, v in headers.items()}, body)  # gateways lower-case
    forged, forged_body = site.webhook("Customer", "Acme GmbH", "not-the-secret")
    with pytest.raises(WebhookRejected, match="does not match"):
        connector.verify_webhook(cfg, forged, forged_body)
    with pytest.raises(WebhookRejected, match="does not match"):
        connector.verify_webhook(cfg, headers, body + b" ")
    with pytest.raises(WebhookRejected, match="missing"):
        connector.verify_webhook(cfg, {"Content-Type": "application/json"}, body)
    with pytest.raises(WebhookRejected, match="no webhook secret"):
        connector.verify_webhook(config(site).model_copy(update={"webhook_secret": None}), headers, body)


def test_webhook_records_come_only_from_the_keyed_re_read(site):
    b2b(site)
    connector, cfg = ERPNext(), config(site)
    # a body carrying fields (as a webhook's "Data" may): they are never written
    headers, body = site.webhook("Customer", "Acme GmbH", HOOK_SECRET,
                                 body={"doctype": "Customer", "name": "Acme GmbH", "customer_name": "Evil Corp",
                                       "tax_id": "XX000"})
    site.doc_calls.clear()
    delivery = connector.parse_webhook(cfg, headers, body)
    (record,) = delivery.records
    assert isinstance(record, AccountRecord) and record.profile["name"] == "Acme GmbH"
    assert record.profile["tax_id"] == "DE811907980"
    assert site.doc_calls[0]["path"] == "/api/resource/Customer/Acme GmbH"  # the keyed GET
    assert delivery.delivery_id.startswith("sha256:") and delivery.topic == "Customer"

    # a replay of an old delivery writes the document as it is now, never the old state
    site.touch("Customer", "Acme GmbH", customer_name="Acme Group GmbH")
    replay = connector.parse_webhook(cfg, headers, body)
    assert replay.delivery_id == delivery.delivery_id  # the same bytes: recognised as a replay
    assert replay.records[0].profile["name"] == "Acme Group GmbH"

    for doctype, name, kind in (("Contact", "Max Mustermann-Acme GmbH", CustomerRecord),
                                ("Address", "Acme GmbH-Billing", AccountRecord),
                                ("Sales Order", "SAL-ORD-2024-00001", OrderRecord),
                                ("Sales Invoice", "ACC-SINV-2024-00001", InvoiceRecord)):
        h, b = site.webhook(doctype, name, HOOK_SECRET)
        (r,) = connector.parse_webhook(cfg, h, b).records
        assert isinstance(r, kind), doctype
    h, b = site.webhook("Sales Order", "SAL-ORD-2024-00003", HOOK_SECRET)  # a draft: nothing to write
    assert connector.parse_webhook(cfg, h, b).records == []


def test_webhook_whose_re_read_fails_writes_nothing_and_says_why(site):
    b2b(site)
    connector, cfg = ERPNext(), config(site)
    headers, body = site.webhook("Sales Order", "SAL-ORD-2024-00001", HOOK_SECRET)
    site.fail_next(1, status=503)  # no retries on the webhook path: the next sync catches up
    failed = connector.parse_webhook(cfg, headers, body)
    assert failed.records == [] and "could not read Sales Order SAL-ORD-2024-00001 again" in failed.note
    forged_name, forged_body = site.webhook("Sales Order", "SAL-ORD-FORGED", HOOK_SECRET)
    missing = connector.parse_webhook(cfg, forged_name, forged_body)
    assert missing.records == [] and "404" in missing.note
    other, other_body = site.webhook("Quotation", "QTN-00001", HOOK_SECRET)
    ignored = connector.parse_webhook(cfg, other, other_body)
    assert ignored.records == [] and "not read by this connector" in ignored.note
    junk_headers, junk = site.webhook("", "", HOOK_SECRET, body=b"not json")
    assert connector.parse_webhook(cfg, junk_headers, junk).records == []


def test_registered_under_the_entry_point():
    from connectors.sdk.registry import available, get

    assert available()["erpnext"] is ERPNext and get("erpnext") is ERPNext
    assert ERPNext.kind == "erp"
    from connectors.sdk.secrets import secret_fields

    assert secret_fields(ERPNextConfig) == {"api_key", "api_secret", "webhook_secret"}
