"""Erasure (GDPR art. 17) is complete, as a property: a customer with random personal data
gets orders and points (with free-text reasons), timeline entries, an identity conflict, a CSV import
with their row and a rejected row mentioning them, and an Idempotency-Key response; after
DELETE and its follow-up job, no item of the tenant (read back with a Scan, here only) and
no object under the tenant's upload prefix contains their email, phone or names, while
another customer's data is untouched.

``ERASURE_EXAMPLES`` raises the number of examples (default 4).
"""
from __future__ import annotations

import json
import os
import time

import boto3
import httpx
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from crm import identity
from tests.conftest import Tenant, partition_items
from tests.connector_helpers import wait_run

# letters that form no word of the data around them, long enough not to occur by chance
names = st.text(alphabet="bcdfghjkmnpqrstvwxz", min_size=7, max_size=12).map(str.capitalize)
digits = st.text(alphabet="0123456789", min_size=8, max_size=8)
MAPPING = {"Id": "external_id", "E-mail": "email", "First name": "name.given",
           "Last name": "name.family", "Country": "address.country", "Street": "address.line1"}
PROGRAM = {"earns_from": "2000-01-01T00:00:00Z", "currency": "EUR", "earn_rates": {"EUR": 1},
           "rounding": "floor", "tiers": [{"name": "Bronze", "threshold": 0}], "expiry_months": 12}
ORDER = {"source": "pos", "channel": "store", "currency": "EUR",
         "lines": [{"sku": "A", "name": "Thing", "quantity": 1, "unit_price": 1000}],
         "total": 1000, "placed_at": "2026-01-02T10:00:00Z"}


def _csv(rows: list[list[str]]) -> bytes:
    head = "Id,E-mail,First name,Last name,Country,Street"
    return ("\r\n".join([head, *(",".join(r) for r in rows)]) + "\r\n").encode()


def _import(tenant: Tenant, data: bytes) -> dict:
    conn = tenant.http.post("/v1/connections", json={
        "connector": "csv", "name": "Old CRM", "config": {"mapping": MAPPING, "source": "legacy"}})
    assert conn.status_code == 201, conn.text
    cid = conn.json()["id"]
    up = tenant.http.post(f"/v1/connections/{cid}/uploads").json()
    assert httpx.put(up["url"], content=data, headers=up["headers"], timeout=30).status_code == 200
    r = tenant.http.post(f"/v1/connections/{cid}/sync", json={"mode": "backfill", "upload_id": up["upload_id"]})
    assert r.status_code == 202, r.text
    return wait_run(tenant, cid, r.json()["id"], timeout=120, poll=0.3)


def _uploads(tenant: Tenant) -> list[str]:
    s3, bucket = boto3.client("s3"), os.environ["RAPPORT_UPLOADS_BUCKET"]
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"uploads/{tenant.id}/"):
        for obj in page.get("Contents", []):
            out.append(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode())
    return out


def _wait_complete(tenant: Tenant, customer_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = tenant.http.get(f"/v1/customers/{customer_id}").json()
        if (body.get("erasure") or {}).get("status") == "complete":
            return body
        time.sleep(0.3)
    raise AssertionError(f"the erasure of {customer_id} did not complete: {body}")


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("ERASURE_EXAMPLES", "4")), deadline=None,
          suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: each example is slow
@given(given_name=names, family=names, phone=digits, other=names)
def test_erasure_leaves_nothing_of_the_person(api_url, event_pipeline, raw_table,
                                              given_name, family, phone, other):
    assume(len({given_name, family, other}) == 3)
    tenant = Tenant(api_url, "Erasure")
    email = f"{given_name}.{family}@example.com".lower()
    phone = f"+4478{phone}"
    # created with an Idempotency-Key: the stored response holds the profile
    r = tenant.http.post("/v1/customers", headers={"Idempotency-Key": f"create-{email}"}, json={
        "email": email, "phone": phone, "name": {"given": given_name, "family": family},
        "external_ids": {"shop": "s-1", "legacy": "L0"}, "addresses": [{"line1": f"1 {family} Street", "country": "FR"}]})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    keep = tenant.create_customer(email=f"{other}@example.org".lower(), name={"given": other})

    tenant.http.post(f"/v1/customers/{cid}/events", json={
        "type": "call.logged", "summary": f"{given_name} {family} called from {phone}"})
    placed = tenant.http.post("/v1/orders", json={**ORDER, "customer": {"email": email}, "external_id": "o-1"})
    assert placed.status_code == 201, placed.text
    order = placed.json()["id"]
    cancelled = tenant.http.post(f"/v1/orders/{order}/cancel", json={"reason": f"{given_name} changed mind"})
    assert cancelled.status_code == 200, cancelled.text
    paid = tenant.http.post("/v1/orders", json={**ORDER, "customer": {"id": cid}, "external_id": "o-2"}).json()
    assert tenant.http.post(f"/v1/orders/{paid['id']}/pay", json={}).status_code == 200
    refund = tenant.http.post(f"/v1/orders/{paid['id']}/refunds",
                              json={"amount": 100, "reason": f"asked by {email} on {phone}"})
    assert refund.status_code == 200, refund.text
    # points with free-text reasons: an adjustment, a redemption (with its Idempotency-Key)
    assert tenant.http.put("/v1/loyalty/program", json=PROGRAM).status_code in (200, 201)
    adjusted = tenant.http.post(f"/v1/customers/{cid}/loyalty/adjustments",
                                json={"points": 40, "reason": f"goodwill for {given_name}"})
    assert adjusted.status_code in (200, 201), adjusted.text
    redeemed = tenant.http.post(f"/v1/customers/{cid}/loyalty/redemptions", headers={"Idempotency-Key": "r-1"},
                                json={"points": 10, "reason": f"{family} voucher"})
    assert redeemed.status_code in (200, 201), redeemed.text
    # an identity conflict: another shop id arrives with the customer's email
    [res] = identity.upsert(tenant.ctx, "shop", [("s-2", {"email": email})])
    assert res.status == "conflict", res
    # a CSV import: their row under a legacy id made of their names (an identity conflict:
    # they have another legacy id), a rejected row with their names, another's row
    run = _import(tenant, _csv([[f"{given_name}{family}", email, given_name, family, "FR", "1 Main St"],
                                ["L2", f"{given_name}.{family}-at-example.com", given_name, family, "FR", "x"],
                                ["L3", f"{other}@example.org".lower(), other, "Kept", "DE", "2 Side St"]]))
    assert run["status"] == "succeeded" and run["rejected_total"] == 2, run
    assert given_name.lower() in json.dumps(run["rejected"]).lower()
    assert event_pipeline.wait_idle(timeout=60)

    erased = tenant.http.delete(f"/v1/customers/{cid}")
    assert erased.status_code == 200, erased.text
    assert erased.json()["erasure"] == {"status": "pending"}
    tomb = _wait_complete(tenant, cid)
    assert tomb["status"] == "erased" and tomb["email"] is None
    assert event_pipeline.wait_idle(timeout=60)

    secrets = [email, phone, phone.lstrip("+"), given_name, family]
    stored = [json.dumps(i, default=str).casefold() for i in partition_items(raw_table, tenant)]
    files = [f.casefold() for f in _uploads(tenant)]
    for secret in secrets:
        assert not [s for s in stored if secret.casefold() in s], secret
        assert not [f for f in files if secret.casefold() in f], secret
    # what is not theirs stays: the other customer, their CSV row, the orders (anonymized)
    assert tenant.http.get(f"/v1/customers/{keep['id']}").json()["email"] == keep["email"]
    assert any(other.casefold() in f for f in files)
    assert tenant.http.get(f"/v1/orders/{order}").json()["cancel_reason"] is None
    assert tenant.http.get(f"/v1/orders/{paid['id']}").json()["refunded_amount"] == 100
    # a repeat is harmless and stays complete
    again = tenant.http.delete(f"/v1/customers/{cid}")
    assert again.status_code == 200 and again.json()["erasure"] == {"status": "complete"}


def test_a_tombstone_from_before_follow_ups_gets_one_on_a_repeated_delete(tenant, event_pipeline):
    """An erasure older than the follow-up has no ``erasure``: a repeat of the DELETE
    queues one that finds what names the customer's id (here a stored response)."""
    from crm.customers import records
    from crm.storage import CustomerItem

    c = tenant.create_customer(email="old-tomb@example.com")
    r = tenant.http.post(f"/v1/customers/{c['id']}/events", headers={"Idempotency-Key": "ev-1"},
                         json={"type": "note"})
    assert r.status_code == 201
    assert tenant.http.delete(f"/v1/customers/{c['id']}").status_code == 200
    _wait_complete(tenant, c["id"])
    item = CustomerItem.get(records.profile_pk(tenant.ctx, c["id"]), records.PROFILE)
    item.update(actions=[CustomerItem.erasure.remove()])  # as erased before this existed
    assert tenant.http.get(f"/v1/customers/{c['id']}").json()["erasure"] is None
    r = tenant.http.delete(f"/v1/customers/{c['id']}")
    assert r.status_code == 200 and r.json()["erasure"] == {"status": "pending"}
    assert _wait_complete(tenant, c["id"])["status"] == "erased"
