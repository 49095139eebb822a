"""Email templates over HTTP (api/routes/email.py, crm/email/templates.py): create with
CSS inlined and the text derived, 422 naming the part and the line (syntax, unknown
variable, unknown attribute, sandbox escape, missing marketing variables), CRUD with
ETag/If-Match, preview for one customer (the unsubscribe link, the postal address or
its placeholder), settings, scopes."""
from __future__ import annotations

import pytest

HTML = """<html><head><style>p { color: #123456 }</style></head><body>
<p>Hello {{ customer.name.given | default("there") }}, from {{ tenant.name }}</p>
<p>{{ postal_address }} <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>"""


def create(tenant, expect=201, **fields):
    body = {"name": "Welcome", "kind": "marketing", "subject": "Hi {{ customer.name.given }}", "html": HTML}
    r = tenant.http.post("/v1/email/templates", json={**body, **fields})
    assert r.status_code == expect, r.text
    return r.json()


def test_create_inlines_css_derives_text_and_reads_back(tenant):
    t = create(tenant)
    assert t["id"].startswith("tpl_") and t["kind"] == "marketing" and t["version"] == 1
    assert 'style="color: #123456;"' in t["html"] and "<style>" not in t["html"]
    assert "{{ unsubscribe_url }}" in t["html"] and t["source_html"] == HTML
    assert t["text_derived"] is True
    assert "Unsubscribe ({{ unsubscribe_url }})" in t["text"]
    got = tenant.http.get(f"/v1/email/templates/{t['id']}")
    assert got.status_code == 200 and got.json() == t and got.headers["ETag"] == '"1"'
    page = tenant.http.get("/v1/email/templates").json()
    assert [x["id"] for x in page["data"]] == [t["id"]]


@pytest.mark.parametrize("fields, field, line, code", [
    ({"html": HTML.replace("</p>\n<p>{{ postal", "</p>\n<p>{% if %}{{ postal")}, "html", 3, "template_syntax"),
    ({"subject": "Hi {{ cutsomer.name }}"}, "subject", 1, "unknown_variable"),
    ({"html": HTML.replace("tenant.name", "customer.nme")}, "html", 2, "unknown_variable"),
    ({"html": HTML.replace("tenant.name", "tenant.__class__.mro()")}, "html", 2, "template_unsafe"),
    ({"html": HTML.replace("tenant.name", "tenant|attr('__class__')")}, "html", 2, "template_unsafe"),
    ({"kind": "transactional", "text": "hi\n{% for i in range(10**9) %}{{ i }}{% endfor %}"}, "text", 2,
     "template_limit"),
    ({"html": HTML.replace('<a href="{{ unsubscribe_url }}">Unsubscribe</a>', "")}, "html", None,
     "missing_required_variable"),
])
def test_invalid_templates_are_422_with_the_part_and_line(tenant, fields, field, line, code):
    r = create(tenant, 422, **fields)
    assert r["code"] == code and r["field"] == field and r.get("line") == line, r
    if line:
        assert f"line {line}" in r["detail"]
    assert tenant.http.get("/v1/email/templates").json()["data"] == []  # nothing written


def test_transactional_needs_no_unsubscribe_and_a_given_text_is_kept(tenant):
    t = create(tenant, kind="transactional", html="<p>Your order</p>", text="Order {{ event.order_id }}")
    assert t["text"] == "Order {{ event.order_id }}" and t["text_derived"] is False


def test_patch_if_match_and_delete(tenant):
    t = create(tenant)
    path = f"/v1/email/templates/{t['id']}"
    stale = tenant.http.patch(path, json={"name": "x"}, headers={"If-Match": '"7"'})
    assert stale.status_code == 412
    r = tenant.http.patch(path, json={"subject": "New {{ tenant.name }}", "text": "plain {{ postal_address }} "
                                      "{{ unsubscribe_url }}"}, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["text_derived"] is False
    r = tenant.http.patch(path, json={"text": None})
    assert r.json()["text_derived"] is True and "Unsubscribe" in r.json()["text"]
    bad = tenant.http.patch(path, json={"html": "<p>{{ customer.nope }}</p>"})
    assert bad.status_code == 422  # and the template is unchanged
    assert tenant.http.get(path).json()["version"] == 3
    assert tenant.http.delete(path).status_code == 204
    assert tenant.http.get(path).status_code == 404
    assert tenant.http.delete(path).status_code == 404


def test_preview_renders_for_a_customer(tenant):
    t = create(tenant)
    c = tenant.create_customer(email="ann@example.com", name={"given": "Ann", "family": "Lee"})
    path = f"/v1/email/templates/{t['id']}/preview"
    r = tenant.http.post(path, json={"customer_id": c["id"]})
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["subject"] == "Hi Ann"
    assert "Hello Ann, from Acme" in p["html"] and "Hello Ann, from Acme" in p["text"]
    assert "/v1/unsubscribe/" in p["html"] and "set it with PUT /v1/email/settings" in p["text"]
    assert any("postal address" in w for w in p["warnings"])
    s = tenant.http.put("/v1/email/settings", json={"postal_address": "1 Main St, Springfield"})
    assert s.status_code == 200 and s.json()["postal_address"] == "1 Main St, Springfield"
    p = tenant.http.post(path, json={"customer_id": c["id"]}).json()
    assert "1 Main St, Springfield" in p["html"] and p["warnings"] == []
    missing = tenant.http.post(path, json={"customer_id": "cus_01ARZ3NDEKTSV4RRFFQ69G5FAV"})
    assert missing.status_code == 404
    nobody = tenant.http.post("/v1/email/templates/tpl_01ARZ3NDEKTSV4RRFFQ69G5FAV/preview",
                              json={"customer_id": c["id"]})
    assert nobody.status_code == 404


def test_preview_of_a_data_dependent_error_is_422(tenant):
    """A loyalty balance in a tenant without a program: undefined for this customer."""
    t = create(tenant, kind="transactional", subject="Points", html="<p>\n{{ customer.loyalty.balance }}</p>")
    c = tenant.create_customer(email="bo@example.com")
    r = tenant.http.post(f"/v1/email/templates/{t['id']}/preview", json={"customer_id": c["id"]})
    assert r.status_code == 422 and r.json()["field"] == "html" and r.json()["code"] == "unknown_variable"


def test_settings_default_sender_must_be_verified(tenant):
    dev = f"hello@{tenant.id}.example.test"
    assert tenant.http.get("/v1/email/settings").json()["default_sender"] == dev  # the dev sender
    r = tenant.http.put("/v1/email/settings", json={"default_sender": "news@unverified.example"})
    assert r.status_code == 422 and r.json()["code"] == "sender_not_verified" and r.json()["field"] == "default_sender"
    r = tenant.http.put("/v1/email/settings", json={"default_sender": dev, "from_name": "Acme", "reply_to": "a@b.co"})
    assert r.status_code == 200 and r.json()["from_name"] == "Acme"
    assert tenant.http.get("/v1/email/settings").json()["reply_to"] == "a@b.co"


def test_scopes(tenant):
    import httpx

    reader = httpx.Client(base_url=str(tenant.http.base_url), headers={
        "Authorization": f"Bearer {tenant.key_with('email:read')}"})
    assert reader.get("/v1/email/templates").status_code == 200
    r = reader.post("/v1/email/templates", json={"name": "x", "kind": "transactional", "subject": "s",
                                                 "html": "<p>x</p>"})
    assert r.status_code == 403 and r.json()["required_scope"] == "email:write"
    other = httpx.Client(base_url=str(tenant.http.base_url), headers={
        "Authorization": f"Bearer {tenant.key_with('customers:write')}"})
    assert other.get("/v1/email/settings").status_code == 403
