"""The Odoo connector against a fake Odoo over HTTP (tests/fakes/odoo.py), through both of
Odoo's APIs: JSON-2 (an Odoo 19) and JSON-RPC (an Odoo 17). What the streams yield, how
they page and resume, and what ``check`` says."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from connectors import odoo
from connectors.odoo import Invoices, Odoo, OdooConfig, Partners, SaleOrders
from connectors.sdk import CheckFailed, VendorError
from connectors.sdk.base import AccountRecord, CustomerRecord, InvoiceRecord, OrderRecord, ReadContext
from connectors.sdk.registry import get
from tests.connector_helpers import Sleeps, read_stream
from tests.fakes.odoo import API_KEY, DATABASE, LOGIN, FakeOdoo

APIS = ["json2", "jsonrpc"]
TIE = "2024-03-01T12:00:00Z"  # a bulk import: many records written in the same second


@pytest.fixture(params=APIS)
def fake(request):
    with FakeOdoo(request.param) as server:
        yield server


def config(fake: FakeOdoo, **changes) -> OdooConfig:
    values = {
        "base_url": fake.url,
        "database": DATABASE,
        "api_key": API_KEY,
        "username": LOGIN if fake.api == "jsonrpc" else None,
        **changes,
    }
    return OdooConfig(**values)


def context(fake: FakeOdoo, mode: str = "incremental", **changes) -> tuple[ReadContext, Sleeps]:
    cfg = config(fake, **changes)
    sleeps = Sleeps()
    return ReadContext(cfg, Odoo().client(cfg, sleep=sleeps), mode), sleeps


def book(fake: FakeOdoo) -> dict[str, int]:
    """A small Odoo: a company with two contacts and a delivery address, a lone person,
    orders (confirmed, cancelled, a quotation) and invoices (open, paid, a credit note,
    a vendor bill)."""
    ids = {
        "company": fake.add_company(
            "Nordlicht Möbel GmbH",
            vat="DE811907980",
            street="Hafenstraße 4",
            city="Hamburg",
            zip="20457",
            country_id=2,
            credit_limit=15000.0,
            property_payment_term_id=2,
            email="einkauf@nordlicht.example",
        )
    }
    ids["buyer"] = fake.add_person(
        "Greta Sommer", parent=ids["company"], function="Purchasing", email="greta@nordlicht.example"
    )
    ids["payables"] = fake.add_person("Jonas Brandt", parent=ids["company"], function="Accounts Payable")
    ids["delivery"] = fake.add_person("Warehouse", parent=ids["company"], type="delivery", street="Kai 9")
    ids["person"] = fake.add_person(
        "Maya Lindqvist",
        email="maya@mail.example",
        street="1 Ferry Building",
        city="San Francisco",
        zip="94111",
        country_id=3,
    )
    ids["order"] = fake.add_order(ids["buyer"])
    ids["cancelled"] = fake.add_order(ids["company"], state="cancel")
    ids["quotation"] = fake.add_order(ids["buyer"], state="draft")
    ids["lone_order"] = fake.add_order(ids["person"], [(4, 3, 35.0)], currency=2, tax_rate=0.0)
    ids["open"] = fake.add_invoice(ids["buyer"], 1187.5, residual=436.88, payment_state="partial")
    ids["paid"] = fake.add_invoice(ids["company"], 200.0, payment_state="paid", residual=0.0)
    ids["refund"] = fake.add_invoice(ids["company"], 100.0, move_type="out_refund")
    ids["bill"] = fake.add_move("in_invoice", ids["company"])
    return ids


def test_the_connector_is_registered_as_an_erp_without_webhooks():
    cls = get("odoo")
    assert cls is Odoo and cls.kind == "erp" and cls.webhooks is False
    assert [s.name for s in cls.streams] == ["partners", "sale_orders", "invoices"]


def test_config_validates_the_url_and_database_and_keeps_the_key_secret():
    from connectors.sdk.secrets import secret_fields

    assert secret_fields(OdooConfig) == {"api_key"}
    for bad in (
        {"base_url": "http://odoo.example.com"},
        {"base_url": "https://odoo.example.com/web?db=x"},
        {"database": "my db"},
        {"database": ""},
        {"api_key": "key\n"},
    ):
        values = {"base_url": "https://odoo.example.com", "database": "acme", "api_key": API_KEY, **bad}
        with pytest.raises(ValidationError) as info:
            OdooConfig(**values)
        assert API_KEY not in str(info.value)
    assert (
        OdooConfig(base_url="https://acme.odoo.com/", database="acme", api_key=API_KEY).base_url
        == "https://acme.odoo.com"
    )


def test_every_stream_yields_odoo_records_through_the_detected_api(fake):
    ids = book(fake)
    rc, _ = context(fake)
    partners, _, _ = read_stream(Partners, rc)
    by_id = {r.external_id: r for r in partners}
    assert set(by_id) == {
        str(ids[k]) for k in ("company", "buyer", "payables", "person")
    }  # the address is not a person
    company = by_id[str(ids["company"])]
    assert isinstance(company, AccountRecord) and company.profile["tax_id"] == "DE811907980"
    assert company.profile["credit_limit"] == 1500000 and company.profile["currency"] == "EUR"
    assert company.profile["payment_terms"] == "30 Days"
    buyer = by_id[str(ids["buyer"])]
    assert isinstance(buyer, CustomerRecord) and (buyer.account, buyer.role) == (str(ids["company"]), "Purchasing")
    lone = by_id[str(ids["person"])]
    assert isinstance(lone, CustomerRecord) and lone.account is None
    assert lone.profile["addresses"][0]["country"] == "US"

    orders, _, _ = read_stream(SaleOrders, rc)
    by_id = {r.external_id: r for r in orders}
    assert set(by_id) == {str(ids[k]) for k in ("order", "cancelled", "lone_order")}  # the quotation waits
    order = by_id[str(ids["order"])]
    assert isinstance(order, OrderRecord) and order.account == str(ids["company"])
    assert order.customer.external_id == str(ids["buyer"])
    assert [(li.sku, li.quantity, li.unit_price) for li in order.lines] == [
        ("DESK-OAK", 2, 49900),
        ("CHAIR-ERG", 1, 18950),
    ]
    assert (order.total, order.tax, order.discount) == (143688, 24938, 0)
    assert by_id[str(ids["cancelled"])].cancelled_at is not None
    assert by_id[str(ids["cancelled"])].customer is None  # the company ordered itself
    usd = by_id[str(ids["lone_order"])]
    assert (usd.currency, usd.total, usd.account, usd.lines[0].sku) == ("USD", 10500, None, "LAMP-01")

    invoices, _, _ = read_stream(Invoices, rc)
    by_id = {r.external_id: r for r in invoices}
    assert set(by_id) == {str(ids[k]) for k in ("open", "paid", "refund")}  # not the vendor bill
    open_ = by_id[str(ids["open"])]
    assert isinstance(open_, InvoiceRecord) and (open_.status, open_.outstanding) == ("open", 43688)
    assert open_.account == str(ids["company"]) and open_.customer.external_id == str(ids["buyer"])
    assert (open_.payment_terms, open_.due_at) == ("30 Days", "2024-03-21T00:00:00.000Z")
    assert by_id[str(ids["paid"])].status == "paid" and by_id[str(ids["paid"])].outstanding == 0
    assert by_id[str(ids["refund"])].total == -12100 and by_id[str(ids["refund"])].outstanding == -12100
    assert rc.client.api == fake.api


def test_requests_are_authenticated_explicit_and_keyset_paged(fake):
    book(fake)
    rc, _ = context(fake)
    for stream in (Partners, SaleOrders, Invoices):
        read_stream(stream, rc)
    calls = [c for c in fake.rpc_calls if c["api"] is not None]
    for c in calls:
        assert c["headers"]["x-odoo-database"] == DATABASE
        assert c["headers"]["authorization"] == f"bearer {API_KEY}"
    detection = [c for c in calls if c["path"] == "/json/2/res.users/context_get"]
    assert len(detection) == 1  # found once per client (one run), not per call
    reads = [_kw(c) for c in calls if _method(c) == "search_read" and _model(c) != "res.company"]
    assert {_model(c) for c in calls if _method(c) == "search_read"} >= {"res.partner", "sale.order", "account.move"}
    for kw in reads:
        assert kw["fields"] and "offset" not in kw  # explicit fields, never an offset page
        assert kw["order"] == "write_date asc, id asc" and kw["limit"] == odoo.PAGE_SIZE
    # the order lines and the buyers of a page are read in one batch each, not per order
    assert sum(1 for c in calls if _model(c) == "sale.order.line") == 1
    assert [_method(c) for c in calls if _model(c) == "sale.order.line"] == ["read"]


def _rpc_args(c: dict) -> list:
    return c["body"]["params"]["args"]


def _model(c: dict) -> str | None:
    if c["api"] == "json2":
        return c["path"].split("/")[3]
    args = _rpc_args(c)
    return args[3] if c["body"]["params"]["method"] == "execute_kw" else None


def _method(c: dict) -> str | None:
    if c["api"] == "json2":
        return c["path"].split("/")[4]
    args = _rpc_args(c)
    return args[4] if c["body"]["params"]["method"] == "execute_kw" else None


def _kw(c: dict) -> dict:
    return c["body"] if c["api"] == "json2" else _rpc_args(c)[6]


def test_a_second_shared_by_more_records_than_a_page_loses_and_repeats_nothing(fake, monkeypatch):
    monkeypatch.setattr(odoo._OdooStream, "page_size", 50)
    company = fake.add_company("Bulk Import AG", write_date="2024-03-01T11:59:59Z")
    people = fake.seed_partners(130, write_date=TIE, parent=company)
    later = fake.add_person("After The Import", write_date="2024-03-01T12:00:01Z")
    rc, _ = context(fake)
    records, state, pages = read_stream(Partners, rc)
    read = [r.external_id for r in records]
    assert len(read) == len(set(read)) == 132
    assert set(read) == {str(i) for i in (company, *people, later)}
    assert len(pages) == 3 and state["page"] is None and state["cursor"] == "2024-03-01T12:00:01.000Z"
    # the next run re-reads the boundary (the lookback window) but yields nothing twice
    again, state2, _ = read_stream(Partners, rc, state)
    assert again == []
    # a record changed afterwards, inside the same second as others, is read once more
    fake.touch("res.partner", people[7], write_date="2024-03-01T12:00:01Z", function="Buyer")
    changed, _, _ = read_stream(Partners, rc, state2)
    assert [(r.external_id, r.role) for r in changed] == [(str(people[7]), "Buyer")]


def test_every_checkpoint_resumes_exactly(fake, monkeypatch):
    monkeypatch.setattr(odoo._OdooStream, "page_size", 40)
    company = fake.add_company("Resume GmbH", write_date="2024-03-01T11:00:00Z")
    fake.seed_orders(60, company, write_date=TIE)
    fake.seed_orders(30, company, write_date="2024-03-01T12:00:02Z")
    rc, _ = context(fake)
    # each checkpoint as the runner stores it: serialised when its page is written
    pages = [(copy.deepcopy(p.state), [r.external_id for r in p.records]) for p in SaleOrders().read(rc, {})]
    everything = [ext for _, records in pages for ext in records]
    assert len(everything) == len(set(everything)) == 90 and len(pages) == 3
    for n, (checkpoint, _) in enumerate(pages[:-1]):
        assert checkpoint["open"] and checkpoint["page"][1] > 0  # the last [write_date, id] read
        resumed, _, _ = read_stream(SaleOrders, rc, checkpoint)
        before = [ext for _, records in pages[: n + 1] for ext in records]
        after = [r.external_id for r in resumed]
        assert before + after == everything, n  # nothing lost, nothing repeated


def test_incremental_runs_read_only_what_changed(fake):
    ids = book(fake)
    rc, _ = context(fake)
    _, state, _ = read_stream(Invoices, rc)
    assert read_stream(Invoices, rc, state)[0] == []
    fake.touch("account.move", ids["open"], payment_state="paid", amount_residual=0.0)
    changed, state, _ = read_stream(Invoices, rc, state)
    assert [(r.external_id, r.status, r.outstanding) for r in changed] == [(str(ids["open"]), "paid", 0)]
    # a quotation is not an order until confirmed; then the next run brings it
    first, order_state, _ = read_stream(SaleOrders, rc)
    assert str(ids["quotation"]) not in {r.external_id for r in first}
    fake.touch("sale.order", ids["quotation"], state="sale")
    confirmed, _, _ = read_stream(SaleOrders, rc, order_state)
    assert [r.external_id for r in confirmed] == [str(ids["quotation"])]


def test_throttling_and_server_errors_are_retried(fake):
    book(fake)
    rc, sleeps = context(fake)
    rc.client.detect()
    fake.throttle_next(2, retry_after=3)
    fake.fail_next(1, status=502)
    records, _, _ = read_stream(Partners, rc)
    assert len(records) == 4
    assert sleeps[:2] == [3.0, 3.0] and len(sleeps) == 3 and fake.throttled == 2
    fake.fail_next(10, status=503)
    with pytest.raises(VendorError) as info:
        read_stream(Invoices, rc)
    assert info.value.kind == "vendor" and info.value.status == 503


def test_credentials_refused_mid_run_fail_as_auth(fake):
    book(fake)
    rc, _ = context(fake)
    rc.client.detect()
    fake.key = "revoked"
    with pytest.raises(VendorError) as info:
        read_stream(Partners, rc)
    assert info.value.kind == "auth"
    assert API_KEY not in str(info.value)


# check ------------------------------------------------------------------------------------


def check(fake: FakeOdoo, **changes) -> None:
    cfg = config(fake, **changes)
    client = Odoo().client(cfg, sleep=Sleeps())
    try:
        Odoo().check(cfg, client)
    finally:
        client.close()


def test_check_passes_and_says_which_api(fake):
    book(fake)
    check(fake)


def test_check_says_when_the_plan_has_no_external_api(fake):
    fake.no_api_plan()
    with pytest.raises(CheckFailed) as info:
        check(fake)
    assert "plan has no external API access" in str(info.value) and "Custom plan" in str(info.value)
    assert info.value.kind == "config"


def test_check_says_when_the_key_is_refused(fake):
    with pytest.raises(CheckFailed) as info:
        check(fake, api_key="0" * 40)
    assert "refused the API key" in str(info.value) and info.value.kind == "auth"
    assert "0" * 40 not in str(info.value)


def test_check_says_when_the_database_name_is_wrong(fake):
    with pytest.raises(CheckFailed) as info:
        check(fake, database="acme-prod")
    assert "acme-prod" in str(info.value) and "database" in str(info.value)
    assert info.value.kind == "config"


def test_json_rpc_needs_the_login_and_refuses_a_wrong_one():
    with FakeOdoo("jsonrpc", version="18.0") as fake:
        with pytest.raises(CheckFailed) as info:
            check(fake, username=None)
        assert "username" in str(info.value) and "18.0" in str(info.value)
        with pytest.raises(CheckFailed) as info:
            check(fake, username="someone@example.com")
        assert "refused" in str(info.value) and info.value.kind == "auth"


def test_check_says_when_nothing_at_the_url_is_odoo():
    with FakeOdoo("json2") as fake:
        fake.api = "none"  # not Odoo: 404 to /json/2 and to /jsonrpc alike
        with pytest.raises(CheckFailed) as info:
            check(fake)
        assert "base_url" in str(info.value)


def test_an_odoo_connection_checks_over_the_api_and_never_returns_the_key(tenant):
    """Through the emulator: the entry point, the config schema, the sealed key, and
    check's reasons as the API answers them."""
    with FakeOdoo("json2") as fake:
        listed = {c["name"]: c for c in tenant.http.get("/v1/connectors").json()["data"]}["odoo"]
        assert listed["kind"] == "erp" and listed["config_schema"]["properties"]["api_key"]["writeOnly"] is True
        r = tenant.http.post(
            "/v1/connections",
            json={
                "connector": "odoo",
                "name": "Odoo",
                "config": {"base_url": fake.url, "database": DATABASE, "api_key": API_KEY},
            },
        )
        assert r.status_code == 201, r.text
        conn = r.json()
        assert conn["secrets_set"] == ["api_key"] and API_KEY not in r.text
        assert tenant.http.post(f"/v1/connections/{conn['id']}/check").json()["ok"] is True
        fake.no_api_plan()
        r = tenant.http.post(f"/v1/connections/{conn['id']}/check")
        assert r.status_code == 422 and r.json()["ok"] is False
        assert "plan has no external API access" in r.json()["detail"] and API_KEY not in r.text
