"""B2B accounts through the HTTP API (docs/accounts.md), against moto's server over HTTP:
create, get, PATCH with If-Match, list, paging, name search, lookup, contacts, the 360 and
invoices; the request counts the docs promise, measured."""
from __future__ import annotations

import pytest

from tests.conftest import partition_items
from tests.dynamo_calls import dynamodb_calls

ACME = {"name": "Acme Café GmbH", "tax_id": "DE123456789", "payment_terms": "Net 30", "credit_limit": 500000,
        "currency": "EUR", "tags": ["wholesale"], "email": "ap@acme.example", "phone": "+49 30 1234567",
        "website": "https://acme.example", "attributes": {"segment": "gastro"},
        "addresses": [{"label": "billing", "line1": "Hauptstr. 1", "city": "Berlin", "country": "DE"}],
        "external_ids": {"erpnext": "CUST-0001"}}


def create(tenant, **fields) -> dict:
    r = tenant.http.post("/v1/accounts", json={**ACME, **fields})
    assert r.status_code == 201, r.text
    return r.json()


def test_create_get_and_its_etag(tenant):
    body = create(tenant)
    assert body["id"].startswith("acc_") and body["version"] == 1 and body["stub"] is False
    assert body["phone"] == "+49301234567" and body["credit_limit"] == 500000 and body["balance"] == {}
    r = tenant.http.get(f"/v1/accounts/{body['id']}")
    assert r.status_code == 200 and r.headers["etag"] == '"1"'
    assert r.json() == body


def test_create_is_idempotent_with_a_key_and_a_duplicate_external_id_is_409(tenant):
    headers = {"Idempotency-Key": "acc-create-1"}
    first = tenant.http.post("/v1/accounts", json=ACME, headers=headers)
    again = tenant.http.post("/v1/accounts", json=ACME, headers=headers)
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    dup = tenant.http.post("/v1/accounts", json={**ACME, "name": "Other"})
    assert dup.status_code == 409 and dup.headers["content-type"].startswith("application/problem+json")
    assert dup.json()["field"] == "external_ids.erpnext" and dup.json()["existing_account_id"] == first.json()["id"]


@pytest.mark.parametrize("payload, field", [
    ({"tax_id": "x"}, "name"),
    ({"name": "A", "credit_limit": -1}, "credit_limit"),
    ({"name": "A", "currency": "euro"}, "currency"),
    ({"name": "A", "website": "javascript:alert(1)"}, "website"),
    ({"name": "A", "surprise": 1}, "surprise"),
])
def test_bad_input_is_422_naming_the_field_and_writes_nothing(tenant, raw_table, payload, field):
    before = partition_items(raw_table, tenant)
    r = tenant.http.post("/v1/accounts", json=payload)
    assert r.status_code == 422, r.text
    assert field in r.text
    assert [i for i in partition_items(raw_table, tenant) if "#A#" in i["pk"]] == \
        [i for i in before if "#A#" in i["pk"]]


def test_patch_with_if_match_and_412_on_a_stale_etag(tenant):
    acc = create(tenant, external_ids={"erpnext": "P-1"})
    r = tenant.http.patch(f"/v1/accounts/{acc['id']}", json={"payment_terms": "Net 60", "attributes": {"x": 1}},
                          headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["payment_terms"] == "Net 60" and r.headers["etag"] == '"2"'
    assert r.json()["attributes"] == {"segment": "gastro", "x": 1}
    stale = tenant.http.patch(f"/v1/accounts/{acc['id']}", json={"payment_terms": "Net 10"},
                              headers={"If-Match": '"1"'})
    assert stale.status_code == 412 and stale.json()["current_version"] == 2
    assert tenant.http.get(f"/v1/accounts/{acc['id']}").json()["payment_terms"] == "Net 60"
    assert tenant.http.patch(f"/v1/accounts/{acc['id']}", json={"name": None}).status_code == 422
    moved = tenant.http.patch(f"/v1/accounts/{acc['id']}", json={"external_ids": {"erpnext": "P-2"}})
    assert moved.status_code == 200
    found = tenant.http.get("/v1/accounts/lookup", params={"source": "erpnext", "external_id": "P-2"}).json()
    assert [a["id"] for a in found["data"]] == [acc["id"]]
    assert tenant.http.get("/v1/accounts/lookup", params={"source": "erpnext", "external_id": "P-1"}
                           ).json()["data"] == []
    assert tenant.http.patch("/v1/accounts/acc_01ARZ3NDEKTSV4RRFFQ69G5FAV", json={"name": "x"}).status_code == 404


def test_list_pages_and_name_prefix_search_is_case_and_accent_insensitive(tenant):
    made = [create(tenant, name=n, external_ids={"erpnext": f"L-{i}"})["id"]
            for i, n in enumerate(["Müller AG", "Muller & Sons", "Mueller Ltd", "Zeta Corp", "MÜLLER-Bau"])]
    seen, cursor = [], None
    while True:
        page = tenant.http.get("/v1/accounts", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [a["id"] for a in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == sorted(made) and all(a["balance"] is None for a in page["data"])
    names, cursor = [], None
    while True:
        page = tenant.http.get("/v1/accounts", params={"name": "mull", "limit": 1,
                                                       **({"cursor": cursor} if cursor else {})}).json()
        names += [a["name"] for a in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert names == ["Müller AG", "MÜLLER-Bau", "Muller & Sons"]  # in normalised-name order
    assert tenant.http.get("/v1/accounts", params={"name": "MÜLLER B"}).json()["data"][0]["name"] == "MÜLLER-Bau"
    assert tenant.http.get("/v1/accounts", params={"name": "--"}).status_code == 422
    with dynamodb_calls() as calls:
        from crm.accounts import service

        service.list_accounts(tenant.ctx, limit=25, name="mu")
    assert calls == {"Query": 1}, calls


def test_lookup_by_source_and_external_id(tenant):
    acc = create(tenant, external_ids={"odoo": "res.partner,7"})
    r = tenant.http.get("/v1/accounts/lookup", params={"source": "odoo", "external_id": "res.partner,7"})
    assert r.status_code == 200 and [a["id"] for a in r.json()["data"]] == [acc["id"]]
    assert tenant.http.get("/v1/accounts/lookup", params={"source": "odoo"}).status_code == 422
    with dynamodb_calls() as calls:
        from crm.accounts import service

        service.lookup(tenant.ctx, "odoo", "res.partner,7")
    assert calls == {"GetItem": 1, "BatchGetItem": 1}, calls


def test_contacts_link_role_list_conflict_and_unlink(tenant):
    acme, other = create(tenant, external_ids={"erpnext": "C-1"}), create(tenant, name="Other", external_ids={})
    people = [tenant.create_customer(email=f"p{i}@acme.example", name={"given": f"P{i}"})["id"] for i in range(3)]
    r = tenant.http.post(f"/v1/accounts/{acme['id']}/contacts", json={"customer_id": people[0], "role": "Purchasing"})
    assert r.status_code == 201 and r.json()["role"] == "Purchasing" and r.json()["email"] == "p0@acme.example"
    again = tenant.http.post(f"/v1/accounts/{acme['id']}/contacts", json={"customer_id": people[0], "role": "CFO"})
    assert again.status_code == 200 and again.json()["role"] == "CFO"
    for cid in people[1:]:
        assert tenant.http.post(f"/v1/accounts/{acme['id']}/contacts", json={"customer_id": cid}).status_code == 201
    customer = tenant.http.get(f"/v1/customers/{people[0]}").json()
    assert customer["account_id"] == acme["id"] and customer["account_role"] == "CFO"
    taken = tenant.http.post(f"/v1/accounts/{other['id']}/contacts", json={"customer_id": people[0]})
    assert taken.status_code == 409 and taken.json()["code"] == "contact_of_another_account"
    assert taken.json()["account_id"] == acme["id"] and taken.json()["field"] == "customer_id"
    seen, cursor = [], None
    while True:
        page = tenant.http.get(f"/v1/accounts/{acme['id']}/contacts",
                               params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [c["customer_id"] for c in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == sorted(people, reverse=True)
    assert tenant.http.delete(f"/v1/accounts/{acme['id']}/contacts/{people[0]}").status_code == 204
    assert tenant.http.delete(f"/v1/accounts/{acme['id']}/contacts/{people[0]}").status_code == 404
    assert tenant.http.get(f"/v1/customers/{people[0]}").json()["account_id"] is None
    assert tenant.http.post(f"/v1/accounts/{other['id']}/contacts", json={"customer_id": people[0]}).status_code == 201
    missing = tenant.http.post(f"/v1/accounts/{acme['id']}/contacts",
                               json={"customer_id": "cus_01ARZ3NDEKTSV4RRFFQ69G5FAV"})
    assert missing.status_code == 404 and missing.json()["field"] == "customer_id"
    assert tenant.http.post(f"/v1/accounts/{acme['id']}/contacts", json={"customer_id": "nope"}).status_code == 422
    assert tenant.http.get("/v1/accounts/acc_01ARZ3NDEKTSV4RRFFQ69G5FAV/contacts").status_code == 404


def _sync(tenant, records) -> dict:
    from connectors import sink

    return sink.write(tenant.ctx, "erpnext", "test", records).counts


def test_360_in_two_requests_and_the_customer_360_names_the_account(tenant):
    from connectors.sdk.base import InvoiceRecord, OrderLine, OrderRecord

    acc = create(tenant, external_ids={"erpnext": "CUST-360"})
    ann = tenant.create_customer(email="ann@acme.example", name={"given": "Ann"})["id"]
    tenant.http.post(f"/v1/accounts/{acc['id']}/contacts", json={"customer_id": ann, "role": "Buyer"})
    line = [OrderLine("sku-1", "Espresso beans", 2, 5000)]
    _sync(tenant, [
        OrderRecord("SO-1", "2026-03-01T10:00:00Z", "web", "EUR", "2026-03-01T09:00:00Z", line, 10000,
                    account="CUST-360", paid_at="2026-03-01T09:30:00Z"),
        InvoiceRecord("SINV-1", "2026-03-02T10:00:00Z", "SINV-1", "EUR", "2026-03-02T00:00:00Z", 10000, 10000,
                      due_at="2026-04-01T00:00:00Z", account="CUST-360", order="SO-1", lines=line),
        InvoiceRecord("SINV-2", "2026-03-03T10:00:00Z", "SINV-2", "USD", "2026-03-03T00:00:00Z", 700, 300,
                      account="CUST-360"),
    ])
    from crm.accounts.view import view_360

    with dynamodb_calls() as calls:
        view_360(tenant.ctx, acc["id"])
    assert calls == {"Query": 1, "BatchGetItem": 1}, calls
    view = tenant.http.get(f"/v1/accounts/{acc['id']}/360").json()
    assert view["account"]["balance"] == {"EUR": 10000, "USD": 300} and view["account"]["open_invoices"] == 2
    assert [(c["customer_id"], c["role"], c["name"]["given"]) for c in view["contacts"]] == [(ann, "Buyer", "Ann")]
    assert [o["external_id"] for o in view["recent_orders"]] == ["SO-1"]
    assert view["recent_orders"][0]["customer_id"] is None and view["recent_orders"][0]["status"] == "paid"
    assert [i["number"] for i in view["recent_invoices"]] == ["SINV-2", "SINV-1"]
    scoped = tenant.key_with("customers:read")
    limited = tenant.http.get(f"/v1/accounts/{acc['id']}/360", headers={"Authorization": f"Bearer {scoped}"}).json()
    assert limited["recent_orders"] is None and limited["recent_invoices"] is None
    assert tenant.http.get("/v1/accounts/acc_01ARZ3NDEKTSV4RRFFQ69G5FAV/360").status_code == 404
    c360 = tenant.http.get(f"/v1/customers/{ann}/360").json()
    assert c360["account"] == {"id": acc["id"], "name": "Acme Café GmbH", "role": "Buyer"}
    from crm.customer360 import view_360 as customer_view

    with dynamodb_calls() as calls:
        customer_view(tenant.ctx, ann)
    assert calls == {"Query": 1, "BatchGetItem": 1}, calls


def test_invoices_list_filters_and_get(tenant):
    from connectors.sdk.base import CustomerRecord, InvoiceRecord

    acc = create(tenant, external_ids={"erpnext": "CUST-INV"})
    _sync(tenant, [
        InvoiceRecord(f"I-{i}", "2026-03-05T10:00:00Z", f"I-{i}", "EUR", f"2026-03-0{i + 1}T00:00:00Z", 1000, 1000,
                      status=status, account="CUST-INV" if i != 3 else None,
                      customer=CustomerRecord("p-1", "2026-03-01T00:00:00Z", {"email": "bill@person.example"})
                      if i >= 2 else None)
        for i, status in enumerate(["open", "paid", "open", "draft"])])
    everything = tenant.http.get("/v1/invoices", params={"account_id": acc["id"]}).json()["data"]
    assert [i["number"] for i in everything] == ["I-2", "I-1", "I-0"]
    assert [i["outstanding"] for i in everything] == [1000, 1000, 1000]
    assert [i["number"] for i in tenant.http.get("/v1/invoices", params={"account_id": acc["id"], "status": "open"}
                                                 ).json()["data"]] == ["I-2", "I-0"]
    cid = everything[0]["customer_id"]
    assert [i["number"] for i in tenant.http.get("/v1/invoices", params={"customer_id": cid}).json()["data"]] == \
        ["I-3", "I-2"]
    assert {i["number"] for i in tenant.http.get("/v1/invoices", params={"status": "draft"}).json()["data"]} == {"I-3"}
    seen, cursor = [], None
    while True:
        page = tenant.http.get("/v1/invoices", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [i["number"] for i in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == ["I-3", "I-2", "I-1", "I-0"]
    one = tenant.http.get(f"/v1/invoices/{everything[0]['id']}")
    assert one.status_code == 200 and one.json() == everything[0]
    assert tenant.http.get("/v1/invoices/inv_01ARZ3NDEKTSV4RRFFQ69G5FAV").status_code == 404
    assert tenant.http.get("/v1/invoices", params={"account_id": acc["id"], "customer_id": cid}).status_code == 422
    assert tenant.http.get("/v1/invoices", params={"status": "overdue"}).status_code == 422
    assert tenant.http.post("/v1/invoices", json={}).status_code in (403, 404, 405)
    from crm.accounts import invoices

    for kwargs in ({"account_id": acc["id"]}, {"customer_id": cid}, {"status": "open"}, {}):
        with dynamodb_calls() as calls:
            invoices.list_invoices(tenant.ctx, limit=25, **kwargs)
        assert calls == {"Query": 1}, (kwargs, calls)
    with dynamodb_calls() as calls:
        invoices.get(tenant.ctx, everything[0]["id"])
    assert calls == {"GetItem": 1}
    scoped = tenant.key_with("customers:read")
    assert tenant.http.get("/v1/invoices", headers={"Authorization": f"Bearer {scoped}"}).status_code == 403
