"""ERPNext documents → Rapport records (connectors/erpnext/mapping.py), pure: no HTTP.

The documents are the hand-written ones of tests/fakes/erpnext.py (after ERPNext's DocType
field names), as ``GET /api/resource/<DocType>/<name>`` returns them."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from connectors.erpnext import mapping, webhook_target
from connectors.sdk.base import AccountRecord, CustomerRecord, InvoiceRecord, OrderRecord, Rejected
from crm.customers.schemas import CustomerPatch
from tests.connector_helpers import as_order_create
from tests.fakes import fixture
from tests.fakes.erpnext import address_doc, contact_doc, customer_doc, sales_invoice_doc, sales_order_doc

KOLKATA = ZoneInfo("Asia/Kolkata")
BERLIN = ZoneInfo("Europe/Berlin")
COUNTRIES = {"Germany": "DE", "India": "IN"}


def stamped(doc: dict, modified: str = "2024-03-01 10:00:00.250000", creation: str = "2024-02-20 09:15:00") -> dict:
    return {**doc, "modified": modified, "creation": creation}


def test_site_times_become_utc_in_the_sites_zone():
    assert mapping.site_utc("2024-03-01 10:00:00.250000", KOLKATA) == "2024-03-01T04:30:00.250Z"
    assert mapping.site_utc("2024-03-01 10:00:00", BERLIN) == "2024-03-01T09:00:00.000Z"  # CET
    assert mapping.site_utc("2024-07-01 10:00:00", BERLIN) == "2024-07-01T08:00:00.000Z"  # CEST
    # the hour a DST change repeats: its first occurrence (CEST)
    assert mapping.site_utc("2024-10-27 02:30:00", BERLIN) == "2024-10-27T00:30:00.000Z"
    assert mapping.site_date("2024-04-01", KOLKATA) == "2024-03-31T18:30:00.000Z"
    # and back, for the filters: the site's wall time at full precision
    assert mapping.to_site("2024-03-01T04:30:00.250Z", KOLKATA) == "2024-03-01 10:00:00.250000"
    assert mapping.stamp({"modified": "2024-03-01 10:00:00.000001"}, KOLKATA) == "2024-03-01T04:30:00.000001+00:00"
    assert mapping.site_utc(None, KOLKATA) is None


def test_company_customer_is_an_account_with_all_its_addresses():
    doc = stamped(customer_doc("Acme GmbH", email_id="Buyer@Acme.example", website="https://acme.example",
                               credit_limits=[{"company": "A", "credit_limit": 50000.0},
                                              {"company": "B", "credit_limit": 20000.0}]))
    billing = stamped(address_doc("Acme GmbH-Billing", customer="Acme GmbH"), modified="2024-03-05 08:00:00")
    shipping = stamped(address_doc("Acme GmbH-Shipping", customer="Acme GmbH", line1="Am Hafen 3",
                                   city="Hamburg", address_type="Shipping", is_primary_address=0))
    gone = stamped(address_doc("Acme GmbH-Old", customer="Acme GmbH", line1="Old 1", disabled=1),
                   modified="2024-03-06 08:00:00")
    record = mapping.customer(doc, [shipping, billing, gone], COUNTRIES, KOLKATA)
    assert isinstance(record, AccountRecord)
    assert record.external_id == "Acme GmbH"
    # the latest of the customer and its addresses: a change of either is newer
    assert record.updated_at == "2024-03-06T02:30:00.000Z"
    assert record.created_at == "2024-02-20T03:45:00.000Z"
    p = record.profile
    assert (p["name"], p["tax_id"], p["currency"], p["payment_terms"]) == ("Acme GmbH", "DE811907980", "EUR", "Net 30")
    assert p["email"] == "buyer@acme.example" and p["website"] == "https://acme.example"
    assert p["credit_limit"] == 5_000_000  # minor units, the highest per-company limit
    # the whole set (disabled ones dropped), primary first; country names → ISO codes
    assert p["addresses"] == [
        {"line1": "Friedrichstraße 68", "city": "Berlin", "postal_code": "10117", "country": "DE", "label": "billing"},
        {"line1": "Am Hafen 3", "city": "Hamburg", "postal_code": "10117", "country": "DE", "label": "shipping"}]
    assert p["attributes"] == {"erpnext_disabled": False, "erpnext_customer_group": "Commercial",
                               "erpnext_territory": "Germany"}


def test_individual_customer_is_a_person_and_disabled_is_marked_not_dropped():
    doc = stamped(customer_doc("Jane Doe", company=False, email_id="jane@example.com", mobile_no="+91 98765 43210",
                               disabled=1))
    record = mapping.customer(doc, [], COUNTRIES, KOLKATA)
    assert isinstance(record, CustomerRecord) and record.account is None
    assert record.profile["name"] == {"given": "Jane", "family": "Doe"}
    assert record.profile["phone"] == "+919876543210"
    assert record.profile["attributes"]["erpnext_disabled"] is True
    assert "addresses" not in record.profile
    CustomerPatch.model_validate(record.profile)
    assert isinstance(mapping.customer({"customer_name": "x"}, [], COUNTRIES, KOLKATA), Rejected)
    assert isinstance(mapping.customer(stamped(customer_doc("X"), modified="yesterday"), [], COUNTRIES, KOLKATA),
                      Rejected)


def test_contact_of_a_company_is_a_person_with_account_and_role():
    doc = stamped(contact_doc("Max Mustermann-Acme GmbH", "Max", "Mustermann", customer="Acme GmbH",
                              email=None, designation=None, department="Purchasing", unsubscribed=1,
                              email_ids=[{"email_id": "max@private.example", "is_primary": 0},
                                         {"email_id": "max@acme.example", "is_primary": 1}],
                              phone_nos=[{"phone": "030 1234567", "is_primary_phone": 1},
                                         {"phone": "+49 171 2345678", "is_primary_mobile_no": 1}]))
    record = mapping.contact(doc, {"Acme GmbH"}, KOLKATA)
    assert isinstance(record, CustomerRecord)
    assert record.external_id == "contact:Max Mustermann-Acme GmbH"  # never collides with a Customer's name
    assert (record.account, record.role) == ("Acme GmbH", "Purchasing")  # designation, else department
    p = record.profile
    assert p["email"] == "max@acme.example"  # the primary row when the primary field is empty
    assert p["phone"] == "+491712345678"  # the primary mobile first
    assert p["consent"] == {"email": {"status": "denied", "source": "erpnext", "at": record.updated_at}}
    CustomerPatch.model_validate(p)
    # designation wins over department; the primary email field over the children
    doc2 = {**doc, "designation": "Head of Procurement", "email_id": "m.mustermann@acme.example"}
    r2 = mapping.contact(doc2, {"Acme GmbH"}, KOLKATA)
    assert r2.role == "Head of Procurement" and r2.profile["email"] == "m.mustermann@acme.example"
    # an individual's contact (no company among its links) is skipped
    assert mapping.contact(doc, set(), KOLKATA) is None
    # several links: the first company by idx
    doc3 = {**doc, "links": [{"link_doctype": "Supplier", "link_name": "Acme GmbH", "idx": 1},
                             {"link_doctype": "Customer", "link_name": "Jane Doe", "idx": 2},
                             {"link_doctype": "Customer", "link_name": "Beta AG", "idx": 3},
                             {"link_doctype": "Customer", "link_name": "Acme GmbH", "idx": 4}]}
    assert mapping.contact(doc3, {"Acme GmbH", "Beta AG"}, KOLKATA).account == "Beta AG"


def test_sales_orders_map_with_account_buyer_and_states():
    doc = stamped(sales_order_doc("SAL-ORD-2024-00001", "Acme GmbH", contact="Max Mustermann-Acme GmbH"),
                  creation="2024-03-01 09:59:00")
    record = mapping.order(doc, {"Acme GmbH"}, KOLKATA)
    assert isinstance(record, OrderRecord)
    assert record.account == "Acme GmbH" and record.customer.external_id == "contact:Max Mustermann-Acme GmbH"
    assert [(li.sku, li.quantity, li.unit_price) for li in record.lines] == [("SKU-PUMP-20", 2, 12000),
                                                                             ("SKU-SEAL-KIT", 1, 4550)]
    assert (record.tax, record.total, record.discount, record.shipping) == (5425, 33975, 0, 0)
    assert record.placed_at == "2024-03-01T04:29:00.000Z"  # created on its transaction date
    assert record.channel == "store" and record.cancelled_at is None and record.fulfilled_at is None
    as_order_create(record, "erpnext")
    # an individual's order: the customer is the buyer, no account
    own = mapping.order(stamped(sales_order_doc("SO-2", "Jane Doe")), {"Acme GmbH"}, KOLKATA)
    assert own.account is None and own.customer.external_id == "Jane Doe"
    # back-dated: the transaction date's midnight at the site
    back = mapping.order(stamped(sales_order_doc("SO-3", "Jane Doe", transaction_date="2024-02-01")), set(), KOLKATA)
    assert back.placed_at == "2024-01-31T18:30:00.000Z"
    # drafts are not orders yet; cancelled ones cancel; delivered ones are fulfilled
    assert mapping.order(stamped(sales_order_doc("SO-4", "Jane Doe", docstatus=0)), set(), KOLKATA) is None
    cancelled = mapping.order(stamped(sales_order_doc("SO-5", "Jane Doe", docstatus=2)), set(), KOLKATA)
    assert cancelled.cancelled_at == cancelled.updated_at and cancelled.cancel_reason == "cancelled in ERPNext"
    done = mapping.order(stamped(sales_order_doc("SO-6", "Jane Doe", per_delivered=100.0)), set(), KOLKATA)
    assert done.fulfilled_at == done.updated_at
    # an additional discount lands in the reconciled discount; a fractional quantity is one line
    disc = stamped(sales_order_doc("SO-7", "Jane Doe", discount_amount=10.0, grand_total=329.75))
    disc["items"][1].update(qty=2.5, uom="Kg", amount=113.75)
    disc.update(grand_total=398.0, total_taxes_and_charges=54.25)
    r = mapping.order(disc, set(), KOLKATA)
    assert r.lines[1].name == "Seal kit (2.5 Kg)" and (r.lines[1].quantity, r.lines[1].unit_price) == (1, 11375)
    assert r.discount == 24000 + 11375 + 5425 - 39800
    as_order_create(r, "erpnext")


def test_orders_that_cannot_be_represented_are_rejected_with_the_reason():
    # a company's order without a contact person: no buyer, the account keeps it (docs/accounts.md)
    own = mapping.order(stamped(sales_order_doc("SO-8", "Acme GmbH")), {"Acme GmbH"}, KOLKATA)
    assert isinstance(own, OrderRecord) and (own.account, own.customer, own.email) == ("Acme GmbH", None, None)
    nobody = mapping.order(stamped(sales_order_doc("SO-8b", None)), set(), KOLKATA)
    assert isinstance(nobody, Rejected) and "names no customer" in nobody.reason
    by_email = mapping.order(stamped(sales_order_doc("SO-9", "Acme GmbH", contact_email="ap@acme.example")),
                             {"Acme GmbH"}, KOLKATA)
    assert by_email.email == "ap@acme.example" and by_email.account == "Acme GmbH"
    over = mapping.order(stamped(sales_order_doc("SO-10", "Jane Doe", grand_total=999.0)), set(), KOLKATA)
    assert isinstance(over, Rejected) and "does not reconcile" in over.reason
    money = mapping.order(stamped(sales_order_doc("SO-11", "Jane Doe", currency="EURO")), set(), KOLKATA)
    assert isinstance(money, Rejected) and "ISO 4217" in money.reason
    assert isinstance(mapping.order(stamped({**sales_order_doc("SO-12", "Jane Doe"), "items": "x"}), set(), KOLKATA),
                      Rejected)


def test_sales_invoices_states_credit_notes_and_terms():
    doc = stamped(sales_invoice_doc("ACC-SINV-2024-00001", "Acme GmbH", order="SAL-ORD-2024-00001",
                                    outstanding=139.75))
    inv = mapping.invoice(doc, {"Acme GmbH"}, KOLKATA)
    assert isinstance(inv, InvoiceRecord)
    assert (inv.number, inv.status, inv.total, inv.outstanding, inv.tax) == (
        "ACC-SINV-2024-00001", "open", 33975, 13975, 5425)
    assert inv.issued_at == "2024-03-02T06:00:00.000Z"  # posting date and time at the site
    assert inv.due_at == "2024-03-31T18:30:00.000Z" and inv.payment_terms == "Net 30"
    assert inv.account == "Acme GmbH" and inv.order == "SAL-ORD-2024-00001" and len(inv.lines) == 2
    paid = mapping.invoice({**doc, "outstanding_amount": 0.0, "status": "Paid"}, {"Acme GmbH"}, KOLKATA)
    assert paid.status == "paid" and paid.outstanding == 0 and paid.paid_at == paid.updated_at
    draft = mapping.invoice({**doc, "docstatus": 0}, set(), KOLKATA)
    assert draft.status == "draft"
    cancelled = mapping.invoice({**doc, "docstatus": 2, "status": "Cancelled"}, set(), KOLKATA)
    assert (cancelled.status, cancelled.outstanding, cancelled.cancelled_at) == ("cancelled", 0, cancelled.updated_at)
    # rounding on: the customer is billed the rounded total
    rounded = mapping.invoice({**doc, "rounded_total": 340.0, "disable_rounded_total": 0}, set(), KOLKATA)
    assert rounded.total == 34000
    # a credit note keeps its sign: summed with the open invoices it lowers the balance
    credit = stamped(sales_invoice_doc("ACC-SINV-2024-00002", "Acme GmbH", is_return=1,
                                       return_against="ACC-SINV-2024-00001", grand_total=-120.0,
                                       total_taxes_and_charges=-19.16, outstanding=-120.0, status="Return"))
    for item in credit["items"]:
        item["qty"] = -item["qty"]
    note = mapping.invoice(credit, {"Acme GmbH"}, KOLKATA)
    assert (note.credit_note, note.return_against, note.total, note.outstanding, note.status) == (
        True, "ACC-SINV-2024-00001", -12000, -12000, "open")
    assert note.tax == -1916 and all(li.quantity > 0 for li in note.lines) and note.paid_at is None
    assert isinstance(mapping.invoice({**doc, "currency": None}, set(), KOLKATA), Rejected)


def test_addresses_need_a_line_and_a_known_country():
    doc = address_doc("X-Billing", customer="X", country="Atlantis")
    assert mapping.address(doc, COUNTRIES) is None
    assert mapping.address({**doc, "country": "de"}, {})["country"] == "DE"  # a two-letter value as is
    assert mapping.address({**doc, "country": "Germany", "address_line1": " "}, COUNTRIES) is None


def test_webhook_body_names_the_document():
    assert webhook_target(b'{"doctype": "Sales Order", "name": "SAL-ORD-2024-00001"}') == (
        "Sales Order", "SAL-ORD-2024-00001")
    # Frappe's documented example: selected fields, the doctype only in the child rows
    echo = fixture("frappe", "webhook_quotation_on_update_httpbin_echo.json")
    assert webhook_target(echo["data"].encode()) == ("Quotation", "QTN-00001")
    assert webhook_target(b"name=SO-1") is None and webhook_target(b'["x"]') is None
    assert webhook_target(b'{"doctype": "Customer"}') is None
