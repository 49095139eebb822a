"""The functions' IAM policy in infra/resources.json is sufficient *and* least.

Every route is driven over HTTP against moto's server (the shared fixtures); every
DynamoDB call the app makes meanwhile is recorded at botocore (PynamoDB and the
Powertools idempotency layer both go through ``BaseClient._make_api_call``) and
translated into the IAM actions and resources AWS authorizes: a TransactWriteItems is
one PutItem/UpdateItem/DeleteItem/ConditionCheckItem per item, a Query with IndexName
is authorized on ``table/<t>/index/<i>``. Each must be allowed by the policy, and each
action the policy allows must have been used. moto does not enforce IAM, so this is
the test that would otherwise only fail in AWS, with AccessDenied.
"""
from __future__ import annotations

import json
import threading
from collections import defaultdict

import pytest

from api.http import OPERATIONS
from infra.package import MERGE_TEMPLATE

pytestmark = pytest.mark.slow

TABLE = {"Fn::GetAtt": ["RapportTable", "Arn"]}
INDEXES = {"Fn::Sub": "${RapportTable.Arn}/index/*"}
KINDS = {json.dumps(TABLE): "table", json.dumps(INDEXES): "index"}


def _granted() -> set[tuple[str, str]]:
    """(action, "table"|"index") pairs the merged DefaultRole policy allows."""
    template = json.loads(MERGE_TEMPLATE.read_text())
    [policy] = template["Resources"]["DefaultRole"]["Properties"]["Policies"]
    granted = set()
    for st in policy["PolicyDocument"]["Statement"]:
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for action in st["Action"]:
            if not action.startswith("dynamodb:"):
                continue
            for resource in resources:
                granted.add((action, KINDS[json.dumps(resource)]))
    return granted


def _authorizations(operation: str, params: dict) -> list[tuple[str, str, str]]:
    """(action, "table"|"index", table name) that AWS checks for one API call."""
    if operation == "TransactWriteItems":
        kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                 "ConditionCheck": "ConditionCheckItem"}
        return [(f"dynamodb:{kinds[k]}", "table", v["TableName"])
                for item in params["TransactItems"] for k, v in item.items()]
    if operation == "TransactGetItems":
        return [("dynamodb:GetItem", "table", i["Get"]["TableName"])
                for i in params["TransactItems"]]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{operation}", "table", t) for t in params["RequestItems"]]
    kind = "index" if params.get("IndexName") else "table"
    return [(f"dynamodb:{operation}", kind, params["TableName"])]


@pytest.fixture()
def recorded(api_url, monkeypatch):
    """Record the DynamoDB calls made while the test body runs (after fixture setup:
    creating the tenant and its key is the operator's CLI, not the functions)."""
    from botocore.client import BaseClient

    calls: list[tuple[str, dict]] = []
    lock = threading.Lock()
    original = BaseClient._make_api_call

    def spy(self, operation_name, api_params):
        if self.meta.service_model.service_name == "dynamodb":
            with lock:
                calls.append((operation_name, json.loads(json.dumps(api_params, default=str))))
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", spy)
    return calls


def _drive_every_route(tenant, anon) -> set[str]:
    """One request per route (plus the failure paths that use more actions); returns
    the operation ids served."""
    served = set()
    http = tenant.http

    def call(op_id, method, path, expect, **kw):
        r = (anon if op_id == "health" else http).request(method, path, **kw)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        if op_id:
            served.add(op_id)
        return r

    call("health", "GET", "/v1/health", 200)                       # DescribeTable
    anon.get("/v1/openapi.json").raise_for_status()
    a = call("createCustomer", "POST", "/v1/customers", 201, headers={"Idempotency-Key": "k1"},
             json={"email": "iam-a@example.com", "phone": "+14155552671", "tags": ["vip"],
                   "external_ids": {"shop": "1"}}).json()
    call(None, "POST", "/v1/customers", 201, headers={"Idempotency-Key": "k1"},
         json={"email": "iam-a@example.com", "phone": "+14155552671", "tags": ["vip"],
               "external_ids": {"shop": "1"}})                     # replayed
    # a failed idempotent request deletes its in-progress record (DeleteItem)
    call(None, "POST", "/v1/customers", 409, headers={"Idempotency-Key": "k2"},
         json={"email": "iam-a@example.com"})
    b = call(None, "POST", "/v1/customers", 201,
             json={"email": "iam-b@example.com", "phone": "+14155552671", "tags": ["vip"]}).json()
    call("getCustomer", "GET", f"/v1/customers/{a['id']}", 200)
    call("updateCustomer", "PATCH", f"/v1/customers/{a['id']}", 200,
         headers={"If-Match": '"1"'}, json={"name": {"given": "Ann"}})
    call("listCustomers", "GET", "/v1/customers", 200)
    call(None, "GET", "/v1/customers", 200, params={"tag": "vip"})
    call(None, "GET", "/v1/customers", 200, params={"updated_since": "2000-01-01T00:00:00Z"})
    call("lookupCustomers", "GET", "/v1/customers/lookup", 200, params={"phone": "+14155552671"})
    call(None, "GET", "/v1/customers/lookup", 200, params={"email": "iam-b@example.com"})
    call(None, "GET", "/v1/customers/lookup", 200, params={"source": "shop", "external_id": "1"})
    call("batchUpsertCustomers", "POST", "/v1/customers/batch", 200,
         json={"records": [{"email": "iam-a@example.com", "locale": "en-US"},
                           {"email": "iam-c@example.com"}]})
    call("createTimelineEvent", "POST", f"/v1/customers/{b['id']}/events", 201,
         json={"type": "call.logged"})
    call("listTimelineEvents", "GET", f"/v1/customers/{b['id']}/events", 200)
    order = {"customer": {"id": a["id"]}, "source": "shop", "external_id": "o-1", "channel": "web",
             "currency": "EUR", "placed_at": "2026-01-01T00:00:00Z", "total": 500,
             "lines": [{"sku": "s", "name": "n", "quantity": 1, "unit_price": 500}]}
    o = call("createOrder", "POST", "/v1/orders", 201, json=order).json()
    call(None, "POST", "/v1/orders", 200, json=order)                      # repeat: the original
    call(None, "POST", "/v1/orders", 201, json={**order, "external_id": "o-2",
                                                "customer": {"email": "iam-a@example.com"}})
    call("getOrder", "GET", f"/v1/orders/{o['id']}", 200)
    call("listOrders", "GET", "/v1/orders", 200)
    call(None, "GET", "/v1/orders", 200, params={"customer_id": a["id"]})
    call("payOrder", "POST", f"/v1/orders/{o['id']}/pay", 200, json={})
    call("fulfillOrder", "POST", f"/v1/orders/{o['id']}/fulfill", 200, json={})
    call("refundOrder", "POST", f"/v1/orders/{o['id']}/refunds", 200, json={"amount": 100})
    o2 = call(None, "POST", "/v1/orders", 201, json={**order, "external_id": "o-3"}).json()
    call("cancelOrder", "POST", f"/v1/orders/{o2['id']}/cancel", 200, json={})
    call("getCustomer360", "GET", f"/v1/customers/{a['id']}/360", 200)
    call("eraseCustomer", "DELETE", f"/v1/customers/{b['id']}", 200)
    call("listApiKeys", "GET", "/v1/api-keys", 200)
    key = call("createApiKey", "POST", "/v1/api-keys", 201,
               json={"name": "ci", "scopes": ["customers:read"]}).json()
    rotated = call("rotateApiKey", "POST", f"/v1/api-keys/{key['id']}/rotate", 201).json()
    call("revokeApiKey", "DELETE", f"/v1/api-keys/{rotated['id']}", 200)
    served.add("openapi")
    return served


def test_policy_allows_every_dynamodb_call_and_nothing_unused(tenant, anon, recorded, request):
    served = _drive_every_route(tenant, anon)
    routes = {op.operation_id for op in OPERATIONS}
    assert routes <= served, f"drive these new routes here too: {sorted(routes - served)}"

    used: dict[tuple[str, str], int] = defaultdict(int)
    for operation, params in list(recorded):
        for action, kind, table in _authorizations(operation, params):
            assert table == "rapport-test", (operation, table)
            used[(action, kind)] += 1
    granted = _granted()
    missing = set(used) - granted
    assert not missing, f"the functions would get AccessDenied for {sorted(missing)}"
    unused = granted - set(used)
    assert not unused, f"the policy allows {sorted(unused)}, which no route used: remove it"
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n[deploy] DynamoDB authorizations used by every route: "
              + ", ".join(f"{a.split(':')[1]}@{k}×{n}" for (a, k), n in sorted(used.items())),
              end="", flush=True)
