"""CSV import over HTTP: a csv connection with a mapping, a presigned upload PUT to S3 (the
emulator), a backfill run processed by the sync queue's consumer; rejected rows with their
numbers and reasons; a re-import that changes nothing; one tenant's uploads out of every
other tenant's reach."""
from __future__ import annotations

import httpx
import pytest

from tests.conftest import partition_items
from tests.connector_helpers import wait_run
from tests.plan_helpers import set_plan

MAPPING = {"Id": "external_id", "E-mail": "email", "First name": "name.given", "Last name": "name.family",
           "Street": "address.line1", "City": "address.city", "Zip": "address.postal_code",
           "Country": "address.country", "Tags": "tags", "Newsletter": "consent.email",
           "Plan": "attributes.plan"}
ROWS = 600  # two pages of PAGE_ROWS (500), the second one partial
# data row i (1-based) is spreadsheet row i + 1: the header is row 1
BAD_EMAIL, NO_ID, BAD_COUNTRY, DUPLICATE = 7, 13, 21, 42  # i % 100 == these are invalid


def make_csv(rows: int = ROWS, changed: dict[int, str] | None = None) -> bytes:
    out = ["Id,E-mail,First name,Last name,Street,City,Zip,Country,Tags,Newsletter,Plan,Ignored"]
    for i in range(1, rows + 1):
        ident, email, country = f"L{i}", f"person{i}@example.com", "fr" if i % 2 else "DE"
        if i % 100 == BAD_EMAIL:
            email = f"person{i}-at-example.com"
        if i % 100 == NO_ID:
            ident = email = ""
        if i % 100 == BAD_COUNTRY:
            country = "France"
        if i % 100 == DUPLICATE:
            email = f"person{i - 1}@example.com"
        first = (changed or {}).get(i, f"First{i}")
        out.append(f'{ident},{email},{first},"Person, {i}",{i} Rue Haute,Lyon,690{i % 100:02d},{country},'
                   f'vip;newsletter,{"yes" if i % 3 else "no"},{"gold" if i % 5 == 0 else "basic"},x')
    return ("\r\n".join(out) + "\r\n").encode()


def invalid(i: int) -> bool:
    return i % 100 in (BAD_EMAIL, NO_ID, BAD_COUNTRY, DUPLICATE)


VALID = sum(1 for i in range(1, ROWS + 1) if not invalid(i))


def connect(tenant, mapping=None, **config) -> dict:
    r = tenant.http.post("/v1/connections", json={
        "connector": "csv", "name": "Legacy CRM export",
        "config": {"mapping": mapping or MAPPING, "source": "legacy", **config}})
    assert r.status_code == 201, r.text
    return r.json()


def upload(tenant, cid: str, data: bytes) -> str:
    r = tenant.http.post(f"/v1/connections/{cid}/uploads")
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["upload_id"].startswith("upl_") and up["method"] == "PUT"
    assert up["headers"] == {"Content-Type": "text/csv"} and up["expires_at"].endswith("Z")
    put = httpx.put(up["url"], content=data, headers=up["headers"], timeout=30)
    assert put.status_code == 200, put.text
    return up["upload_id"]


def sync(tenant, cid: str, upload_id: str, timeout: float = 240) -> dict:
    r = tenant.http.post(f"/v1/connections/{cid}/sync", json={"mode": "backfill", "upload_id": upload_id})
    assert r.status_code == 202, r.text
    return wait_run(tenant, cid, r.json()["id"], timeout=timeout, poll=0.3)


def lookup(tenant, **params) -> list[dict]:
    r = tenant.http.get("/v1/customers/lookup", params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def customer_items(raw_table, tenant) -> list[dict]:
    """The tenant's items outside its connections (whose runs and state a sync updates)."""
    return sorted((i for i in partition_items(raw_table, tenant) if "#CONN#" not in i["pk"]),
                  key=lambda i: (i["pk"], i["sk"]))


def test_a_csv_file_is_imported_row_by_row_and_a_reimport_changes_nothing(tenant, event_pipeline, raw_table):
    set_plan(tenant, "starter")  # more connections (or customers) than free allows
    conn = connect(tenant)
    assert conn["config"]["mapping"] == MAPPING
    run = sync(tenant, conn["id"], upload(tenant, conn["id"], make_csv()))
    assert run["status"] == "succeeded", run
    counts = run["streams"]["customers"]
    assert counts["total"] == ROWS and counts["read"] == ROWS and counts["done"]
    assert (counts["created"], counts["updated"], counts["unchanged"]) == (VALID, 0, 0)
    assert counts["rejected"] == ROWS - VALID == run["rejected_total"] == len(run["rejected"]) == 24
    reasons = {r["external_id"]: r["reason"] for r in run["rejected"]}
    assert set(reasons) == {f"row {i + 1}" for i in range(1, ROWS + 1) if invalid(i)}
    assert reasons["row 8"].startswith("row 8: column E-mail: not a valid email address")
    assert reasons["row 14"] == "row 14: no email, phone or external id: columns E-mail, Id are empty"
    assert reasons["row 22"] == "row 22: column Country: must be a two-letter ISO 3166-1 country code, e.g. FR"
    assert reasons["row 43"] == ("row 43: column E-mail: the same email as row 42; only the first row "
                                 "of a customer is imported")
    assert {r["stream"] for r in run["rejected"]} == {"customers"}

    [ann] = lookup(tenant, email="person1@example.com")
    assert ann["name"] == {"given": "First1", "family": "Person, 1"}
    assert ann["external_ids"] == {"legacy": "L1"}
    assert ann["addresses"] == [{"line1": "1 Rue Haute", "city": "Lyon", "postal_code": "69001",
                                 "country": "FR", "label": None, "line2": None, "region": None}] \
        or ann["addresses"] == [{"line1": "1 Rue Haute", "city": "Lyon", "postal_code": "69001", "country": "FR"}]
    assert ann["tags"] == ["vip", "newsletter"] and ann["attributes"] == {"plan": "basic"}
    assert ann["consent"]["email"]["status"] == "granted" and ann["consent"]["email"]["source"] == "import"
    [three] = lookup(tenant, source="legacy", external_id="L3")
    assert three["consent"]["email"]["status"] == "denied" and three["addresses"][0]["country"] == "FR"
    assert lookup(tenant, source="legacy", external_id="L2")[0]["addresses"][0]["country"] == "DE"
    # rejected rows wrote nothing; the first of two rows with one email is the customer
    for i in (BAD_EMAIL, BAD_COUNTRY, DUPLICATE):
        assert lookup(tenant, source="legacy", external_id=f"L{i}") == []
    assert lookup(tenant, email="person41@example.com")[0]["external_ids"] == {"legacy": "L41"}
    listed = tenant.http.get("/v1/customers", params={"limit": 100}).json()
    assert len(listed["data"]) == 100 and listed["next_cursor"]

    assert event_pipeline.wait_idle(timeout=180)
    before = customer_items(raw_table, tenant)
    again = sync(tenant, conn["id"], upload(tenant, conn["id"], make_csv()))
    assert again["status"] == "succeeded", again
    c = again["streams"]["customers"]
    assert (c["read"], c["created"], c["updated"], c["unchanged"], c["rejected"]) == (ROWS, 0, 0, VALID, 24)
    assert event_pipeline.wait_idle(timeout=60)
    assert customer_items(raw_table, tenant) == before

    # a changed row is an update of the same customer, the rest stays as it is
    changed = sync(tenant, conn["id"], upload(tenant, conn["id"], make_csv(3, changed={1: "Annie"})))
    c = changed["streams"]["customers"]
    assert (c["created"], c["updated"], c["unchanged"]) == (0, 1, 2), changed
    [annie] = lookup(tenant, email="person1@example.com")
    assert annie["id"] == ann["id"] and annie["name"]["given"] == "Annie"
    runs = tenant.http.get(f"/v1/connections/{conn['id']}/runs").json()["data"]
    assert [r["id"] for r in runs] == [changed["id"], again["id"], run["id"]]


def test_a_file_without_a_mapped_column_fails_the_run_and_imports_nothing(tenant, event_pipeline):
    conn = connect(tenant, mapping={"Id": "external_id", "Email": "email"})
    run = sync(tenant, conn["id"], upload(tenant, conn["id"], b"Id,E-mail\r\nc1,a@example.com\r\n"))
    assert run["status"] == "failed"
    assert run["error"] == "config"
    assert "no column 'Email'" in run["error_detail"] and "'Id', 'E-mail'" in run["error_detail"]
    assert lookup(tenant, email="a@example.com") == []


def test_an_upload_stays_in_its_tenant_and_connection(tenant, other_tenant, event_pipeline):
    set_plan(tenant, "starter")  # more connections (or customers) than free allows
    conn = connect(tenant)
    upload_id = upload(tenant, conn["id"], make_csv(5))
    # the other tenant sees neither the connection nor its uploads
    assert other_tenant.http.get(f"/v1/connections/{conn['id']}").status_code == 404
    assert other_tenant.http.post(f"/v1/connections/{conn['id']}/uploads").status_code == 404
    r = other_tenant.http.post(f"/v1/connections/{conn['id']}/sync",
                               json={"mode": "backfill", "upload_id": upload_id})
    assert r.status_code == 404
    # nor can it import the upload through a connection of its own
    mine = connect(other_tenant)
    r = other_tenant.http.post(f"/v1/connections/{mine['id']}/sync",
                               json={"mode": "backfill", "upload_id": upload_id})
    assert r.status_code == 422 and r.json()["code"] == "upload_missing", r.text
    # nor can another connection of the same tenant
    second = connect(tenant)
    r = tenant.http.post(f"/v1/connections/{second['id']}/sync", json={"mode": "backfill", "upload_id": upload_id})
    assert r.status_code == 422 and r.json()["code"] == "upload_missing"
    assert other_tenant.http.get(f"/v1/connections/{mine['id']}/runs").json()["data"] == []
    # the owner imports it
    run = sync(tenant, conn["id"], upload_id)
    assert run["status"] == "succeeded" and run["streams"]["customers"]["created"] == 5
    assert lookup(other_tenant, email="person1@example.com") == []


def test_upload_and_sync_refuse_what_cannot_be_imported(tenant, api_url):
    set_plan(tenant, "starter")  # more connections (or customers) than free allows
    conn = connect(tenant)
    cid = conn["id"]
    # a url that was never PUT to
    r = tenant.http.post(f"/v1/connections/{cid}/uploads")
    never = r.json()["upload_id"]
    r = tenant.http.post(f"/v1/connections/{cid}/sync", json={"mode": "backfill", "upload_id": never})
    assert r.status_code == 422 and r.json()["code"] == "upload_missing" and r.json()["field"] == "upload_id"
    r = tenant.http.post(f"/v1/connections/{cid}/sync", json={"mode": "backfill"})
    assert r.status_code == 422 and r.json()["field"] == "upload_id"
    r = tenant.http.post(f"/v1/connections/{cid}/sync", json={"mode": "backfill", "upload_id": "../x"})
    assert r.status_code == 422
    # a connector that reads no files has no uploads
    acme = tenant.http.post("/v1/connections", json={
        "connector": "acme", "name": "Acme", "config": {"base_url": "http://127.0.0.1:9", "api_token": "t"}})
    assert acme.status_code == 201, acme.text
    r = tenant.http.post(f"/v1/connections/{acme.json()['id']}/uploads")
    assert r.status_code == 422 and r.json()["code"] == "not_a_file_connector", r.text
    # the admin scope is needed
    writer = tenant.key_with("customers:write")
    r = httpx.post(f"{api_url}/v1/connections/{cid}/uploads", headers={"Authorization": f"Bearer {writer}"})
    assert r.status_code == 403


@pytest.mark.parametrize("mapping, field", [
    ({"E-mail": "emial"}, "config.mapping.E-mail"),
    ({"E-mail": "email", "Plan": "attributes.9plan"}, "config.mapping.Plan"),
    ({"First name": "name.given"}, "config.mapping"),          # nothing identifies a row
    ({"A": "email", "B": "email"}, "config.mapping"),          # two columns, one field
    ({"E-mail": "email", "City": "address.city"}, "config.mapping"),  # an address without line1/country
])
def test_a_bad_mapping_gets_422_naming_the_column(tenant, mapping, field):
    r = tenant.http.post("/v1/connections", json={"connector": "csv", "name": "x", "config": {"mapping": mapping}})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["field"] == field, problem
