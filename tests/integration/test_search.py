"""GET /v1/customers/search?q=: prefix search by name, email or phone, through a token
index written with the profile (crm/customers/search.py), 2 DynamoDB requests a page."""
from __future__ import annotations

from tests.dynamo_calls import dynamodb_calls


def _ids(tenant, q, **params) -> list[str]:
    r = tenant.http.get("/v1/customers/search", params={"q": q, **params})
    assert r.status_code == 200, r.text
    return [c["id"] for c in r.json()["data"]]


def _all_pages(tenant, q, limit) -> list[str]:
    seen, cursor = [], None
    while True:
        params = {"q": q, "limit": limit, **({"cursor": cursor} if cursor else {})}
        page = tenant.http.get("/v1/customers/search", params=params).json()
        seen += [c["id"] for c in page["data"]]
        if not (cursor := page["next_cursor"]):
            return seen


def test_search_by_prefix_of_given_family_email_and_phone(tenant):
    zoe = tenant.create_customer(email="z.obrien@example.com", phone="+14155552671",
                                 name={"given": "Zoë", "family": "O'Brien"})["id"]
    zack = tenant.create_customer(email="zack@example.org", name={"given": "Zack", "family": "Ortiz"})["id"]
    other = tenant.create_customer(email="amy@example.net", phone="+442071838750",
                                   name={"given": "Amy", "family": "Zorro"})["id"]
    assert set(_ids(tenant, "zo")) == {zoe, other}
    assert _ids(tenant, "ZOE") == [zoe]  # case and accents folded
    assert _ids(tenant, "obri") == [zoe]
    assert _ids(tenant, "o'bri") == [zoe]
    assert set(_ids(tenant, "za")) == {zack}
    assert _ids(tenant, "z.obr") == [zoe]  # email prefix
    assert _ids(tenant, "zack@example.o") == [zack]
    assert _ids(tenant, "+1 415 555") == [zoe]  # phone prefix, formatting ignored
    assert _ids(tenant, "44207") == [other]
    assert _ids(tenant, "zack ort") == [zack]  # every word must match
    assert _ids(tenant, "zack zorro") == []
    assert _ids(tenant, "nobody") == []


def test_search_follows_updates_erasure_and_merge(tenant):
    cid = tenant.create_customer(email="kestrel@example.com", name={"given": "Quentin"})["id"]
    assert _ids(tenant, "quen") == [cid]
    r = tenant.http.patch(f"/v1/customers/{cid}", json={"name": {"given": "Rupert"}})
    assert r.status_code == 200, r.text
    assert _ids(tenant, "quen") == []
    assert _ids(tenant, "rupe") == [cid]
    assert tenant.http.delete(f"/v1/customers/{cid}").status_code == 200
    assert _ids(tenant, "rupe") == [] and _ids(tenant, "kestrel") == []

    keep = tenant.create_customer(email="vesper.keep@example.com")["id"]
    gone = tenant.create_customer(email="vesper.gone@example.com", name={"family": "Vantablack"})["id"]
    r = tenant.http.post(f"/v1/customers/{keep}/merge", json={"other_id": gone})
    assert r.status_code == 200, r.text
    assert _ids(tenant, "vesper") == [keep]  # the merged id is not listed
    assert _ids(tenant, "vantab") == [keep]  # the survivor took the family name


def test_erasure_deletes_the_search_entries(tenant, raw_table):
    from tests.conftest import partition_items

    cid = tenant.create_customer(email="purge.me@example.com", name={"given": "Ophelia"})["id"]
    mine = lambda: [i for i in partition_items(raw_table, tenant) if "#S#" in i["pk"]]  # noqa: E731
    assert {i["sk"] for i in mine()} == {f"ophelia#{cid}", f"purge.me@example.com#{cid}"}
    tenant.http.delete(f"/v1/customers/{cid}")
    assert mine() == []


def test_search_pages_list_each_customer_once_in_two_requests(tenant):
    from crm.customers import search

    made = {tenant.create_customer(email=f"marlowe{i}@example.com",
                                   name={"given": "Marlowe", "family": f"Marlowson{i}"})["id"]
            for i in range(7)}
    assert sorted(_all_pages(tenant, "marlow", 2)) == sorted(made)  # 3 tokens each, listed once
    cursor = None
    for _ in range(30):
        with dynamodb_calls() as calls:
            page = search.search(tenant.ctx, "marlow", limit=3, cursor=cursor)
        assert sum(calls.values()) <= 2 and set(calls) <= {"Query", "BatchGetItem"}, calls
        if not (cursor := page.next_cursor):
            break
    assert cursor is None


def test_search_refuses_a_missing_or_empty_query(tenant):
    for params in ({}, {"q": ""}, {"q": "!!!"}):
        r = tenant.http.get("/v1/customers/search", params=params)
        assert r.status_code == 422, (params, r.text)
        assert "q" in r.text
