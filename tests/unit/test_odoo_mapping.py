"""Odoo records → Rapport records (connectors/odoo/mapping.py), pure. The documents are
written by hand in the shape ``search_read`` answers (many2one ``[id, name]``, ``false``
for empty fields, UTC times without an offset); none comes from Odoo's own data."""

from __future__ import annotations

from connectors.odoo import keyset, odoo_time
from connectors.odoo import mapping as m
from connectors.odoo.transport import classify, error_fields
from connectors.sdk.base import AccountRecord, CustomerRecord, InvoiceRecord, OrderRecord, Rejected
from tests.connector_helpers import as_order_create

EMPTY = dict.fromkeys(
    (
        "street",
        "street2",
        "city",
        "zip",
        "state_id",
        "country_code",
        "vat",
        "company_registry",
        "website",
        "ref",
        "email",
        "phone",
        "function",
        "property_payment_term_id",
    ),
    False,
)
COMPANY = {
    **EMPTY,
    "id": 41,
    "name": "Harbour Tools Ltd",
    "is_company": True,
    "parent_id": False,
    "type": "contact",
    "vat": "BE0477472701",
    "company_registry": "0477.472.701",
    "street": "Kaai 12",
    "street2": "Unit 3",
    "city": "Antwerpen",
    "zip": "2000",
    "country_code": "BE",
    "email": "Orders@Harbour-Tools.example",
    "phone": "+32 3 555 01 23",
    "website": "https://harbour.example",
    "ref": "C-0041",
    "lang": "nl_BE",
    "category_id": [3, 5],
    "property_payment_term_id": [2, "30 Days"],
    "credit_limit": 25000.5,
    "create_date": "2023-11-02 10:15:00",
    "write_date": "2024-03-01 09:30:00",
}
CONTACT = {
    **EMPTY,
    "id": 42,
    "name": "Ines Van Damme",
    "is_company": False,
    "parent_id": [41, "Harbour Tools Ltd"],
    "type": "contact",
    "function": "Head of Purchasing",
    "email": "ines@harbour.example",
    "street": "Kaai 12",
    "country_code": "BE",
    "lang": False,
    "category_id": [],
    "create_date": "2023-11-02 10:16:00",
    "write_date": "2024-03-01 09:30:00",
}
PERSON = {
    **EMPTY,
    "id": 77,
    "name": "Tomás Ferreira",
    "is_company": False,
    "parent_id": False,
    "type": "contact",
    "email": "tomas@mail.example",
    "phone": "(415) 555-2671",
    "street": "1 Ferry Building",
    "city": "San Francisco",
    "zip": "94111",
    "state_id": [1, "California"],
    "country_code": "US",
    "lang": "pt_PT",
    "category_id": [],
    "create_date": "2024-01-05 12:00:00",
    "write_date": "2024-02-29 23:59:59",
}
PARTNERS = {
    41: {
        "id": 41,
        "is_company": True,
        "parent_id": False,
        "commercial_partner_id": [41, "Harbour Tools Ltd"],
        "email": "orders@harbour-tools.example",
    },
    42: {
        "id": 42,
        "is_company": False,
        "parent_id": [41, "Harbour Tools Ltd"],
        "commercial_partner_id": [41, "Harbour Tools Ltd"],
        "email": "ines@harbour.example",
    },
    77: {
        "id": 77,
        "is_company": False,
        "parent_id": False,
        "commercial_partner_id": [77, "Tomás Ferreira"],
        "email": "tomas@mail.example",
    },
}


def line(
    lid: int,
    product: list | bool,
    qty: float,
    price: float,
    subtotal: float,
    *,
    discount: float = 0.0,
    name: str = "Item",
    display_type: str | bool = False,
) -> dict:
    return {
        "id": lid,
        "order_id": [9, "S00009"],
        "product_id": product,
        "name": name,
        "product_uom_qty": qty,
        "price_unit": price,
        "discount": discount,
        "price_subtotal": subtotal,
        "display_type": display_type,
    }


ORDER = {
    "id": 9,
    "name": "S00009",
    "state": "sale",
    "partner_id": [42, "Harbour Tools Ltd, Ines Van Damme"],
    "date_order": "2024-02-28 14:05:00",
    "currency_id": [1, "EUR"],
    "amount_untaxed": 1187.5,
    "amount_tax": 249.38,
    "amount_total": 1436.88,
    "order_line": [91, 92, 93],
    "client_order_ref": "PO-2024-118",
    "create_date": "2024-02-28 14:00:00",
    "write_date": "2024-03-01 09:31:02",
}
LINES = [
    line(90, False, 0, 0, 0, name="Office furniture", display_type="line_section"),
    line(91, [5, "[DESK-OAK] Standing desk, oak"], 2, 499.0, 998.0),
    line(92, [6, "Ergonomic chair"], 1, 189.5, 189.5),
]
INVOICE = {
    "id": 300,
    "name": "INV/2024/00031",
    "move_type": "out_invoice",
    "state": "posted",
    "payment_state": "partial",
    "partner_id": [42, "Harbour Tools Ltd, Ines Van Damme"],
    "commercial_partner_id": [41, "Harbour Tools Ltd"],
    "currency_id": [1, "EUR"],
    "invoice_date": "2024-02-29",
    "invoice_date_due": "2024-03-30",
    "invoice_payment_term_id": [2, "30 Days"],
    "amount_untaxed": 1187.5,
    "amount_tax": 249.38,
    "amount_total": 1436.88,
    "amount_residual": 436.88,
    "create_date": "2024-02-29 08:00:00",
    "write_date": "2024-03-02 16:45:10",
}


# partners ---------------------------------------------------------------------------------


def test_a_company_is_an_account_with_its_terms_limit_and_ids():
    r = m.partner(COMPANY, currency="EUR")
    assert isinstance(r, AccountRecord)
    assert (r.external_id, r.updated_at, r.created_at) == ("41", "2024-03-01T09:30:00.000Z", "2023-11-02T10:15:00.000Z")
    p = r.profile
    assert p["name"] == "Harbour Tools Ltd" and p["tax_id"] == "BE0477472701"
    assert p["addresses"] == [
        {"line1": "Kaai 12", "line2": "Unit 3", "city": "Antwerpen", "postal_code": "2000", "country": "BE"}
    ]
    assert p["payment_terms"] == "30 Days" and p["currency"] == "EUR" and p["credit_limit"] == 2500050
    assert p["email"] == "orders@harbour-tools.example" and p["phone"] == "+3235550123"
    assert p["website"] == "https://harbour.example" and p["tags"] == ["odoo-tag-3", "odoo-tag-5"]
    assert p["attributes"] == {"odoo_ref": "C-0041", "odoo_lang": "nl_BE", "odoo_company_registry": "0477.472.701"}
    # without the company currency no credit limit can be expressed in minor units
    assert "credit_limit" not in m.partner(COMPANY).profile
    assert "credit_limit" not in m.partner({**COMPANY, "credit_limit": 0.0}, currency="EUR").profile


def test_a_contact_names_its_company_and_role_and_a_lone_person_is_a_customer():
    c = m.partner(CONTACT, currency="EUR")
    assert isinstance(c, CustomerRecord)
    assert (c.external_id, c.account, c.role) == ("42", "41", "Head of Purchasing")
    assert c.profile == {"name": {"given": "Ines Van", "family": "Damme"}, "email": "ines@harbour.example"}
    # a contact's street is its company's: not copied onto the person
    p = m.partner(PERSON)
    assert isinstance(p, CustomerRecord) and p.account is None and p.role is None
    assert p.profile["phone"] == "+14155552671"  # a national number read with the country code
    assert p.profile["addresses"] == [
        {
            "line1": "1 Ferry Building",
            "city": "San Francisco",
            "region": "California",
            "postal_code": "94111",
            "country": "US",
        }
    ]
    assert p.updated_at == "2024-02-29T23:59:59.000Z"
    # every empty field is `false` in Odoo: nothing breaks, nothing is invented
    bare = m.partner(
        {
            **EMPTY,
            "id": 5,
            "name": False,
            "is_company": False,
            "parent_id": False,
            "write_date": "2024-01-01 00:00:00",
            "create_date": False,
        }
    )
    assert isinstance(bare, CustomerRecord) and bare.profile == {} and bare.created_at is None


def test_child_addresses_are_skipped_and_bad_partners_rejected():
    for kind in ("invoice", "delivery", "other"):
        assert m.partner({**CONTACT, "type": kind}) is None
    assert isinstance(m.partner({**CONTACT, "function": False}), CustomerRecord)
    assert m.partner({**CONTACT, "function": False}).role is None
    rejected = m.partner({**COMPANY, "name": False})
    assert isinstance(rejected, Rejected) and rejected.external_id == "41" and "without a name" in rejected.reason
    assert isinstance(m.partner({**COMPANY, "write_date": "01/03/2024"}), Rejected)
    assert isinstance(m.partner({"name": "no id"}), Rejected)


# sale orders ------------------------------------------------------------------------------


def test_a_confirmed_order_maps_lines_buyer_account_and_amounts():
    r = m.order(ORDER, LINES, PARTNERS)
    assert isinstance(r, OrderRecord), r
    assert [(li.sku, li.name, li.quantity, li.unit_price) for li in r.lines] == [
        ("DESK-OAK", "Item", 2, 49900),
        ("product-6", "Item", 1, 18950),
    ]  # the section line is left out
    assert (r.total, r.tax, r.discount, r.shipping, r.currency) == (143688, 24938, 0, 0, "EUR")
    assert r.customer.external_id == "42" and r.account == "41" and r.email is None
    assert (r.placed_at, r.updated_at) == ("2024-02-28T14:05:00.000Z", "2024-03-01T09:31:02.000Z")
    assert r.cancelled_at is None and r.channel == "web"
    as_order_create(r, "odoo")


def test_line_discounts_negative_lines_and_fractional_quantities_reconcile():
    lines = [
        line(1, [5, "[DESK-OAK] Standing desk, oak"], 3, 100.0, 270.0, discount=10.0),
        line(2, [7, "[GLUE] Wood glue"], 2.5, 4.0, 10.0),
        line(3, [8, "Discount"], 1, -30.0, -30.0),
    ]
    o = {**ORDER, "amount_untaxed": 250.0, "amount_tax": 52.5, "amount_total": 302.5}
    r = m.order(o, lines, PARTNERS)
    assert [(li.sku, li.quantity, li.unit_price) for li in r.lines] == [("DESK-OAK", 3, 10000), ("GLUE", 1, 1000)]
    assert r.lines[1].name == "Item (2.5)"
    # 30000 + 1000 before discounts; 10 % off the desks and the -30.00 line end up in the discount
    assert (r.discount, r.tax, r.total) == (31000 - 25000, 5250, 30250)
    as_order_create(r, "odoo")
    # a company ordering for itself: the account, its email, no person
    own = m.order({**ORDER, "partner_id": [41, "Harbour Tools Ltd"]}, LINES, PARTNERS)
    # the company's own order: the account keeps it, no person is made of the company's email
    assert own.customer is None and own.account == "41" and own.email is None
    # a lone person: no account
    lone = m.order({**ORDER, "partner_id": [77, "Tomás Ferreira"]}, LINES, PARTNERS)
    assert lone.customer.external_id == "77" and lone.account is None
    jpy = m.order(
        {**ORDER, "currency_id": [3, "JPY"], "amount_untaxed": 1500, "amount_tax": 150, "amount_total": 1650},
        [line(1, [5, "[X] x"], 3, 500, 1500)],
        PARTNERS,
    )
    assert jpy.lines[0].unit_price == 500 and jpy.total == 1650


def test_quotations_are_skipped_cancelled_orders_cancel_and_bad_orders_are_rejected():
    for state in ("draft", "sent"):
        assert m.order({**ORDER, "state": state}, LINES, PARTNERS) is None
    cancelled = m.order({**ORDER, "state": "cancel"}, LINES, PARTNERS)
    assert cancelled.cancelled_at == "2024-03-01T09:31:02.000Z"
    for changes, lines, reason in (
        ({"currency_id": False}, LINES, "ISO 4217"),
        ({}, [], "no product lines"),
        ({"amount_untaxed": 2000.0, "amount_total": 2249.38}, LINES, "exceeds the lines"),
        ({"amount_total": 1500.0}, LINES, "not amount_untaxed + amount_tax"),
        ({"partner_id": False}, LINES, "without a partner_id"),
        ({"write_date": False}, LINES, "without write_date"),
        ({"amount_total": "n/a"}, LINES, "not an amount"),
    ):
        r = m.order({**ORDER, **changes}, lines, PARTNERS)
        assert isinstance(r, Rejected) and r.external_id == "9" and reason in r.reason, (changes, r)


# invoices ---------------------------------------------------------------------------------


def test_an_open_invoice_owes_its_residual_with_terms_and_due_date():
    r = m.invoice(INVOICE, PARTNERS)
    assert isinstance(r, InvoiceRecord)
    assert (r.external_id, r.number, r.status, r.currency) == ("300", "INV/2024/00031", "open", "EUR")
    assert (r.total, r.tax, r.outstanding) == (143688, 24938, 43688)
    assert (r.issued_at, r.due_at, r.payment_terms) == (
        "2024-02-29T00:00:00.000Z",
        "2024-03-30T00:00:00.000Z",
        "30 Days",
    )
    assert r.account == "41" and r.customer.external_id == "42"
    assert r.updated_at == "2024-03-02T16:45:10.000Z" and r.cancelled_at is None


def test_invoice_states_credit_notes_and_other_moves():
    paid = m.invoice({**INVOICE, "payment_state": "paid", "amount_residual": 0.0}, PARTNERS)
    assert paid.status == "paid" and paid.outstanding == 0
    in_payment = m.invoice({**INVOICE, "payment_state": "in_payment", "amount_residual": 0.0}, PARTNERS)
    assert in_payment.status == "paid"
    cancelled = m.invoice({**INVOICE, "state": "cancel"}, PARTNERS)
    assert cancelled.status == "cancelled" and cancelled.outstanding == 0
    assert cancelled.cancelled_at == "2024-03-02T16:45:10.000Z"
    reversed_ = m.invoice({**INVOICE, "payment_state": "reversed", "amount_residual": 0.0}, PARTNERS)
    assert reversed_.status == "cancelled"
    draft = m.invoice({**INVOICE, "state": "draft", "name": "/", "invoice_date": False}, PARTNERS)
    assert draft.status == "draft" and draft.number == "draft-300" and draft.outstanding == 0
    assert draft.issued_at == "2024-02-29T08:00:00.000Z"  # no invoice date yet: when it was created
    refund = m.invoice(
        {**INVOICE, "move_type": "out_refund", "name": "RINV/2024/00002", "amount_residual": 100.0}, PARTNERS
    )
    assert (refund.total, refund.tax, refund.outstanding, refund.status) == (-143688, -24938, -10000, "open")
    assert refund.credit_note is True and paid.credit_note is False  # the sink validates the sign by it
    own = m.invoice({**INVOICE, "partner_id": [41, "Harbour Tools Ltd"]}, PARTNERS)
    assert own.account == "41" and own.customer is None and own.email is None
    for move_type in ("in_invoice", "in_refund", "entry", "out_receipt"):
        assert m.invoice({**INVOICE, "move_type": move_type}, PARTNERS) is None
    bad = m.invoice({**INVOICE, "currency_id": [9, "Euro"]}, PARTNERS)
    assert isinstance(bad, Rejected) and "ISO 4217" in bad.reason


# paging and errors ------------------------------------------------------------------------


def test_the_keyset_domain_reads_after_the_last_record_of_the_boundary_second():
    assert odoo_time("2024-03-01T09:30:00.999Z") == "2024-03-01 09:30:00"  # rounded down: inclusive
    assert keyset(None, None) == []
    assert keyset("2024-03-01T09:25:00.000Z", ["2024-03-01 09:30:00", 118]) == [
        ["write_date", ">=", "2024-03-01 09:25:00"],
        "|",
        ["write_date", ">", "2024-03-01 09:30:00"],
        "&",
        ["write_date", "=", "2024-03-01 09:30:00"],
        ["id", ">", 118],
    ]


def test_odoo_errors_are_classified_from_their_name_and_message():
    assert classify("werkzeug.exceptions.Unauthorized", "Invalid apikey", 401) == "auth"
    assert classify("odoo.exceptions.AccessDenied", "Access Denied") == "auth"
    assert classify("psycopg2.OperationalError", 'FATAL:  database "acme" does not exist') == "database"
    assert (
        classify("odoo.exceptions.AccessDenied", "Access to the external API is only available on the Custom plan.")
        == "plan"
    )
    assert classify("werkzeug.exceptions.NotFound", "the model 'sale.order' does not exist", 404) == "missing"
    assert classify("odoo.exceptions.AccessError", "You are not allowed to access 'Sales Order'", 403) == "other"
    # the SDK keeps the first 300 characters of an error body: name and message come first
    cut = '{"name": "werkzeug.exceptions.Unauthorized", "message": "Invalid apikey", "arguments": ["Invalid ap'
    assert error_fields(cut) == ("werkzeug.exceptions.Unauthorized", "Invalid apikey")
    assert error_fields({"name": "x.Y", "message": "z"}) == ("x.Y", "z")
    assert error_fields("<html>502 Bad Gateway</html>") == ("", "")
