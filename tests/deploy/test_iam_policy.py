"""The functions' IAM policy in infra/resources.json is sufficient *and* least.

Every route is driven over HTTP against moto's server (the shared fixtures), and the
events those requests cause are delivered to app.py's event handlers by the local
pollers (rapport/pollers.py), as Lambda would: the table's stream to the dispatcher, the
subscribers' queues to their consumers. Every DynamoDB, SQS, KMS, S3 and SES call the functions make
meanwhile is recorded at botocore (PynamoDB, the Powertools idempotency layer and boto3
all go through ``BaseClient._make_api_call``; the pollers' own clients are left out) and
translated into the IAM actions and resources AWS authorizes: a TransactWriteItems is
one PutItem/UpdateItem/DeleteItem/ConditionCheckItem per item, a Query with IndexName
is authorized on ``table/<t>/index/<i>``, a SendMessageBatch is ``sqs:SendMessage`` on
its queue. What Lambda itself does with the functions' role is derived from the event
sources in resources.json (AWS's documented needs): reading the stream, receiving,
deleting and inspecting a consumed queue, sending a stream batch it gave up on to the
on-failure queue. Each must be allowed by the policy, and each action the policy allows
must be one of these. moto does not enforce IAM, so this is the test that would
otherwise only fail in AWS, with AccessDenied.
"""
from __future__ import annotations

import json
import os
import re
import threading
from collections import defaultdict

import pytest

from api.http import OPERATIONS
from infra.package import MERGE_TEMPLATE

pytestmark = pytest.mark.slow

TABLE = {"Fn::GetAtt": ["RapportTable", "Arn"]}
INDEXES = {"Fn::Sub": "${RapportTable.Arn}/index/*"}
STREAM = {"Fn::GetAtt": ["RapportTable", "StreamArn"]}
KINDS = {json.dumps(TABLE): "table", json.dumps(INDEXES): "index", json.dumps(STREAM): "stream"}
# SES v2 resources: the tenants' sender identities, and the configuration set every send names
IDENTITIES = {"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*"}
CONFIGURATION_SET = {"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:"
                                "configuration-set/${EmailConfigurationSet}"}
SES_KINDS = {json.dumps(IDENTITIES): "identity", json.dumps(CONFIGURATION_SET): "configuration-set"}
# the IAM action of each SQS API call (the batch calls have none of their own)
SQS_ACTIONS = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
               "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


def _resources() -> dict:
    return json.loads(MERGE_TEMPLATE.read_text())["Resources"]


def _queue(value) -> str:
    """The logical id of the queue whose ARN ``value`` is (GetAtt or "${Queue.Arn}")."""
    if "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn":
        return value["Fn::GetAtt"][0]
    return re.fullmatch(r"\$\{(\w+)\.Arn}", value["Fn::Sub"]).group(1)


def _granted() -> set[tuple[str, str]]:
    """(action, resource) pairs the merged DefaultRole policy allows; the resource is
    "table", "index" or "stream" for DynamoDB and a queue's logical id for SQS."""
    [policy] = _resources()["DefaultRole"]["Properties"]["Policies"]
    granted = set()
    for st in policy["PolicyDocument"]["Statement"]:
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for action in st["Action"]:
            for resource in resources:
                if action.startswith("dynamodb:"):
                    granted.add((action, KINDS[json.dumps(resource)]))
                elif action.startswith("sqs:"):
                    granted.add((action, _queue(resource)))
                elif action.startswith("ses:"):
                    granted.add((action, SES_KINDS[json.dumps(resource)]))
                elif action.startswith("kms:"):
                    granted.add((action, resource["Fn::GetAtt"][0]))
                elif action == "s3:ListBucket":  # an erasure's follow-up lists the tenant's uploads
                    assert resource == {"Fn::GetAtt": ["UploadsBucket", "Arn"]}, resource
                    assert st["Condition"] == {"StringLike": {"s3:prefix": ["uploads/*"]}}, st
                    granted.add((action, "uploads"))
                elif action.startswith("s3:"):
                    assert resource == {"Fn::Sub": "${UploadsBucket.Arn}/uploads/*"}, resource
                    granted.add((action, "uploads"))
    return granted


# S3 calls and the IAM action that authorizes each (HeadObject is s3:GetObject)
S3_ACTIONS = {"HeadObject": "GetObject", "GetObject": "GetObject", "PutObject": "PutObject",
              "ListObjectsV2": "ListBucket"}


def _other_authorization(service: str, operation: str, params: dict) -> tuple[str, str]:
    """KMS on the connections key (connections' and webhook endpoints' secrets), S3 on the
    uploads prefix."""
    if service == "kms":
        return f"kms:{operation}", "ConnectionsKey"
    assert (params.get("Key") or params.get("Prefix") or "").startswith("uploads/"), (operation, params)
    return f"s3:{S3_ACTIONS[operation]}", "uploads"


def _ses_authorizations(operation: str, params: dict) -> list[tuple[str, str]]:
    """SES v2 authorizes a send on the sending identity and on the configuration set; a
    CreateEmailIdentity with tags is also ses:TagResource on the identity."""
    if operation == "SendEmail":
        assert params.get("ConfigurationSetName"), "every send names the configuration set (events)"
        return [("ses:SendEmail", "identity"), ("ses:SendEmail", "configuration-set")]
    out = [(f"ses:{operation}", "identity")]
    if operation == "CreateEmailIdentity" and params.get("Tags"):
        out.append(("ses:TagResource", "identity"))
    return out


def _event_source_needs() -> set[tuple[str, str]]:
    """What Lambda's event source mappings do with the functions' role."""
    needs = set()
    for resource in _resources().values():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            props = event.get("Properties", {})
            if "Stream" in props:
                assert props["Stream"] == STREAM, props["Stream"]
                needs |= {(f"dynamodb:{a}", "stream")
                          for a in ("DescribeStream", "GetRecords", "GetShardIterator")}
                destination = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
                if destination:
                    needs.add(("sqs:SendMessage", _queue(destination)))
            elif "Queue" in props:
                queue = _queue(props["Queue"])
                needs |= {(f"sqs:{a}", queue)
                          for a in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")}
    return needs


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


def _sqs_authorization(operation: str, params: dict) -> tuple[str, str]:
    """(action, queue logical id) that AWS checks for one SQS call of the functions."""
    from crm.queues import SUBSCRIBERS, env_name
    from infra.bootstrap import queue_logical_id

    queues = {os.environ.get(env_name(s)): queue_logical_id(s) for s in SUBSCRIBERS}
    url = params.get("QueueUrl")
    assert url in queues, f"{operation} on {url or params}: not one of the stack's queues"
    return f"sqs:{SQS_ACTIONS.get(operation, operation)}", queues[url]


@pytest.fixture()
def recorded(api_url, monkeypatch):
    """Record the DynamoDB and SQS calls of the functions while the test body runs (after
    fixture setup: creating the tenant and its key is the operator's CLI, not the
    functions; the local pollers' own calls stand for Lambda's, not the functions')."""
    from botocore.client import BaseClient

    from rapport.pollers import is_plumbing

    calls: list[tuple[str, str, dict]] = []
    lock = threading.Lock()
    original = BaseClient._make_api_call

    def spy(self, operation_name, api_params):
        service = self.meta.service_model.service_name
        if service in ("dynamodb", "sqs", "kms", "s3", "sesv2") and not is_plumbing(self):
            with lock:
                calls.append((service, operation_name,
                              json.loads(json.dumps(api_params, default=str))))
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", spy)
    return calls


def _drive_every_route(tenant, anon, stripe_double=None) -> set[str]:
    """One request per route (plus the failure paths that use more actions); returns
    the operation ids served."""
    served = set()
    http = tenant.http

    def call(op_id, method, path, expect, **kw):
        r = (anon if op_id in ("health", "index", "showUnsubscribe", "unsubscribe") else http).request(
            method, path, **kw)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        if op_id:
            served.add(op_id)
        return r

    call("health", "GET", "/v1/health", 200)                       # DescribeTable
    call("index", "GET", "/v1", 200)                                # no AWS call
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
    call("searchCustomers", "GET", "/v1/customers/search", 200, params={"q": "a"})
    call(None, "GET", "/v1/customers", 200, params={"tag": "vip"})
    call(None, "GET", "/v1/customers", 200, params={"updated_since": "2000-01-01T00:00:00Z"})
    call("lookupCustomers", "GET", "/v1/customers/lookup", 200, params={"phone": "+14155552671"})
    call(None, "GET", "/v1/customers/lookup", 200, params={"email": "iam-b@example.com"})
    call(None, "GET", "/v1/customers/lookup", 200, params={"source": "shop", "external_id": "1"})
    call("searchCustomers", "GET", "/v1/customers/search", 200, params={"q": "iam"})
    call("batchUpsertCustomers", "POST", "/v1/customers/batch", 200,
         json={"records": [{"email": "iam-a@example.com", "locale": "en-US"},
                           {"email": "iam-c@example.com"}]})
    call("createTimelineEvent", "POST", f"/v1/customers/{b['id']}/events", 201,
         json={"type": "call.logged"})
    call("listTimelineEvents", "GET", f"/v1/customers/{b['id']}/events", 200)
    program = {"currency": "EUR", "earn_rates": {"EUR": 1}, "return_window_days": 0, "earns_from": "2000-01-01T00:00:00Z",
               "tiers": [{"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 300}]}
    call("putLoyaltyProgram", "PUT", "/v1/loyalty/program", 201, json=program)
    call("getLoyaltyProgram", "GET", "/v1/loyalty/program", 200)
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
    loyalty = f"/v1/customers/{a['id']}/loyalty"
    call("adjustPoints", "POST", loyalty + "/adjustments", 201, json={"points": 30, "reason": "welcome"})
    call("redeemPoints", "POST", loyalty + "/redemptions", 201, json={"points": 20},
         headers={"Idempotency-Key": "r1"})
    call(None, "POST", loyalty + "/redemptions", 201, json={"points": 20},
         headers={"Idempotency-Key": "r1"})                                 # replayed
    call(None, "POST", loyalty + "/redemptions", 422, json={"points": 10_000},
         headers={"Idempotency-Key": "r2"})
    call("getCustomerLoyalty", "GET", loyalty, 200)
    call("listLoyaltyLedger", "GET", loyalty + "/ledger", 200)
    call("getIdentitySettings", "GET", "/v1/identity/settings", 200)
    call("putIdentitySettings", "PUT", "/v1/identity/settings", 200,
         json={"order": ["external_id", "email", "phone"]})
    from crm import identity  # a connector sync's resolution records a conflict to review

    [res] = identity.upsert(tenant.ctx, "shop", [("2", {"email": "iam-a@example.com"})])
    assert res.status == "conflict", res
    call("listIdentityConflicts", "GET", "/v1/identity/conflicts", 200, params={"status": "open"})
    call(None, "GET", "/v1/identity/conflicts", 200)
    call("resolveIdentityConflict", "POST", f"/v1/identity/conflicts/{res.conflict_id}/resolve", 200,
         json={"note": "checked"})
    # a merge moves a customer's orders, timeline, ledger and identities (BatchWriteItem,
    # DeleteItem, Query with Select COUNT, transactions of Put/Delete/ConditionCheck)
    m = call(None, "POST", "/v1/customers", 201,
             json={"email": "iam-m@example.com", "phone": "+14155552672", "tags": ["vip"],
                   "external_ids": {"shop": "9"}}).json()
    call(None, "POST", "/v1/orders", 201, json={**order, "external_id": "o-m", "customer": {"id": m["id"]}})
    call(None, "POST", f"/v1/customers/{m['id']}/events", 201, json={"type": "call.logged"})
    call(None, "POST", f"/v1/customers/{m['id']}/loyalty/adjustments", 201, json={"points": 5, "reason": "m"})
    call("mergeCustomers", "POST", f"/v1/customers/{a['id']}/merge", 200, json={"other_id": m["id"]},
         headers={"Idempotency-Key": "m1"})
    call(None, "POST", f"/v1/customers/{a['id']}/merge", 200, json={"other_id": m["id"]})  # repeat
    call(None, "GET", f"/v1/customers/{m['id']}", 200)                  # resolves to the survivor
    call("searchCustomers", "GET", "/v1/customers/search?q=a", 200)
    call("index", "GET", "/v1", 200)
    call("exportCustomer", "GET", f"/v1/customers/{b['id']}/export", 200)
    call("eraseCustomer", "DELETE", f"/v1/customers/{b['id']}", 200)  # + its follow-up (sync queue)
    _drive_segments(call, a["id"])
    _drive_email(call, tenant)
    _drive_journeys(call, tenant)
    call("listApiKeys", "GET", "/v1/api-keys", 200)
    key = call("createApiKey", "POST", "/v1/api-keys", 201,
               json={"name": "ci", "scopes": ["customers:read"]}).json()
    rotated = call("rotateApiKey", "POST", f"/v1/api-keys/{key['id']}/rotate", 201).json()
    call("revokeApiKey", "DELETE", f"/v1/api-keys/{rotated['id']}", 200)
    if stripe_double is not None:  # first: on starter, the connections below fit the plan's limits
        _drive_billing(call, stripe_double)
    _drive_connections(call, tenant)
    _drive_csv_import(call)
    _drive_shipments(call)
    _drive_accounts(call, tenant)
    _drive_webhooks(call)
    served.update(_drive_agents(call, http))  # the agent's own key made some of its requests
    served.add("openapi")
    return served


def _drive_agents(call, http) -> set[str]:
    """On-premise agents (issue 16): created with its key (a transaction with the key and the
    source guard), its own key's heartbeat (UpdateItem), an upload of a customer, a conflict,
    a bad record and an order (identity resolution, the sink's import, conditional Puts of the
    parked record and the conflict, the acked_seq UpdateItem), fetch (BatchGetItem), the
    parked and conflict pages (Query), a re-key and a revoke (transactions)."""
    import httpx

    agent = call("createAgent", "POST", "/v1/agents", 201, json={"name": "iam"}).json()
    path = f"/v1/agents/{agent['id']}"
    own = httpx.Client(base_url=str(http.base_url), timeout=30, headers={"Authorization": f"Bearer {agent['key']}"})
    served_by_agent = []

    def as_agent(op_id, method, sub, expect, **kw):
        r = own.request(method, f"{path}{sub}" if sub != "/me" else "/v1/agents/me", **kw)
        assert r.status_code == expect, f"{method} {sub}: {r.status_code} {r.text}"
        served_by_agent.append(op_id)
        return r

    hlc = "1764763200123-00000"
    as_agent("agentHeartbeat", "POST", "/heartbeat", 200,
             json={"version": "1", "queued": 0, "parked": 0, "hlc": hlc})
    as_agent("getOwnAgent", "GET", "/me", 200)
    field = {"value": "iam-agent@example.com", "rule": "latest", "hlc": hlc}
    up = as_agent("agentUpload", "POST", "/uploads", 200, json={"records": [
        {"seq": 1, "kind": "customer", "external_id": "1", "hlc": hlc,
         "fields": {"email": field, "locale": {"value": "en", "rule": "local", "hlc": hlc}}},
        {"seq": 2, "kind": "customer", "external_id": "2", "hlc": hlc, "fields": {"email": {**field, "value": "x"}}},
        {"seq": 3, "kind": "order", "external_id": "o1", "hlc": hlc, "order": {
            "updated_at": "2026-01-01T00:00:00Z", "channel": "store", "currency": "EUR",
            "placed_at": "2026-01-01T00:00:00Z", "total": 100, "customer": {"external_id": "1"},
            "lines": [{"sku": "s", "name": "n", "quantity": 1, "unit_price": 100}]}}]}).json()
    cid = up["results"][0]["customer_id"]
    call(None, "PATCH", f"/v1/customers/{cid}", 200, json={"locale": "fr"})
    as_agent("agentUpload", "POST", "/uploads", 200, json={"records": [
        {"seq": 4, "kind": "customer", "external_id": "1", "hlc": hlc,
         "fields": {"locale": {"value": "de", "base": "en", "rule": "cloud", "hlc": hlc}}}]})
    as_agent("agentFetch", "POST", "/fetch", 200, json={"customer_ids": [cid]})
    as_agent("listAgentParked", "GET", "/parked", 200)
    as_agent("listAgentConflicts", "GET", "/conflicts", 200)
    call("listAgents", "GET", "/v1/agents", 200)
    call("getAgent", "GET", path, 200)
    call("reissueAgentKey", "POST", f"{path}/key", 201)
    call("revokeAgent", "DELETE", path, 200)
    call("eraseCustomer", "DELETE", f"/v1/customers/{cid}", 200)  # its follow-up deletes the conflict (gsi1)
    return set(served_by_agent)


def _drive_webhooks(call) -> None:
    """Webhook endpoints (issue 15): the secret sealed (KMS Encrypt) and opened (Decrypt)
    for a signed test ping to a receiver on loopback, a rotation, a patch and a delete."""
    from tests.webhook_receiver import Receiver

    with Receiver() as receiver:
        hook = call("createWebhookEndpoint", "POST", "/v1/webhooks/endpoints", 201,
                    json={"url": f"{receiver.url}/hooks", "types": ["order.*"]}).json()
        path = f"/v1/webhooks/endpoints/{hook['id']}"
        call("listWebhookEndpoints", "GET", "/v1/webhooks/endpoints", 200)
        call("getWebhookEndpoint", "GET", path, 200)
        assert call("testWebhookEndpoint", "POST", f"{path}/test", 200).json()["ok"]
        call("rotateWebhookSecret", "POST", f"{path}/rotate-secret", 200, json={"overlap_seconds": 60})
        call("listWebhookDeliveries", "GET", f"{path}/deliveries", 200)
        call("replayWebhookDeliveries", "POST", f"{path}/replay", 202, json={"since": "2026-01-01T00:00:00Z"})
        call("listChanges", "GET", "/v1/changes", 200)
        call("updateWebhookEndpoint", "PATCH", path, 200, json={"enabled": False})
        call("deleteWebhookEndpoint", "DELETE", path, 204)


def _drive_segments(call, customer_id: str) -> None:
    """Segments: create (a transaction with the catalogue, then the build's message on the
    sync queue, run by sync_work), a refused rule, a duplicate name, list, get, a rename and
    a new rule (transactions), a description (UpdateItem), the preview (a gsi1 Query and the
    sample's profiles), members, the customer's segments and the RFM grid (BatchGetItem),
    and a delete (its members dropped in the background)."""
    vip = {"all": [{"field": "vip", "op": "=", "value": True}]}
    seg = call("createSegment", "POST", "/v1/segments", 201, headers={"Idempotency-Key": "s1"},
               json={"name": "IAM VIPs", "rule": vip}).json()
    call(None, "POST", "/v1/segments", 422, json={"name": "bad", "rule": {"all": [{"field": "nope", "op": "="}]}})
    call(None, "POST", "/v1/segments", 409, json={"name": "iam vips", "rule": vip})
    path = f"/v1/segments/{seg['id']}"
    call("listSegments", "GET", "/v1/segments", 200)
    call("getSegment", "GET", path, 200)
    call("updateSegment", "PATCH", path, 200, json={"name": "IAM big", "rule": {
        "all": [{"field": "orders.count", "op": ">=", "value": 1}]}})
    call(None, "PATCH", path, 200, json={"description": "at least one order"})
    call("previewSegment", "POST", "/v1/segments/preview", 200, json={"rule": vip, "limit": 5})
    call("listSegmentMembers", "GET", path + "/members", 200)
    call("listCustomerSegments", "GET", f"/v1/customers/{customer_id}/segments", 200)
    call("getRfmGrid", "GET", "/v1/segments/rfm", 200)
    gone = call(None, "POST", "/v1/segments", 201, json={"name": "IAM gone", "rule": vip}).json()
    call("deleteSegment", "DELETE", f"/v1/segments/{gone['id']}", 204)


def _drive_email(call, tenant) -> None:
    """Email: templates (a transaction with the name's claim), a preview, settings, a sender
    identity in SES (CreateEmailIdentity with the tenant's tag, GetEmailIdentity, delete),
    a campaign sent to a one-customer segment (the email queue, SES SendEmail with the
    configuration set), a second one held by the frequency cap so it can be paused,
    resumed and cancelled, and the recipient's one-click unsubscribe."""
    import time

    from crm.email import links

    html = '<p>Hi {{ customer.name.given }}</p><a href="{{ unsubscribe_url }}">stop</a> {{ postal_address }}'
    who = call(None, "POST", "/v1/customers", 201, json={
        "email": "iam-mail@example.com", "name": {"given": "Mai"}, "tags": ["iam-mail"],
        "consent": {"email": {"status": "granted", "source": "form"}}}).json()
    tpl = call("createEmailTemplate", "POST", "/v1/email/templates", 201,
               json={"name": "IAM hello", "kind": "marketing", "subject": "Hi {{ customer.name.given }}",
                     "html": html}).json()
    path = f"/v1/email/templates/{tpl['id']}"
    call("listEmailTemplates", "GET", "/v1/email/templates", 200)
    call("getEmailTemplate", "GET", path, 200)
    call("updateEmailTemplate", "PATCH", path, 200, json={"subject": "Hello {{ customer.name.given }}"})
    call("previewEmailTemplate", "POST", path + "/preview", 200, json={"customer_id": who["id"]})
    gone = call(None, "POST", "/v1/email/templates", 201, json={"name": "IAM gone", "subject": "s", "html": html,
                                                                  "kind": "transactional"}).json()
    call("deleteEmailTemplate", "DELETE", f"/v1/email/templates/{gone['id']}", 204)
    settings = call("getEmailSettings", "GET", "/v1/email/settings", 200).json()
    call("putEmailSettings", "PUT", "/v1/email/settings", 200,
         json={"postal_address": "1 Main St", "default_sender": settings["default_sender"]})
    own = f"iam.{tenant.id}.example".lower()
    call("createEmailSender", "POST", "/v1/email/senders", 201, json={"identity": own})
    call("listEmailSenders", "GET", "/v1/email/senders", 200)
    call("getEmailSender", "GET", f"/v1/email/senders/{own}", 200)
    call("deleteEmailSender", "DELETE", f"/v1/email/senders/{own}", 204)
    seg = call(None, "POST", "/v1/segments", 201, json={
        "name": "IAM mail", "rule": {"all": [{"field": "tags", "op": "contains", "value": "iam-mail"}]}}).json()

    def until(path: str, done: tuple[str, ...]) -> dict:
        deadline = time.monotonic() + 60
        while (body := call(None, "GET", path, 200).json())["status"] not in done:
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
        return body

    until(f"/v1/segments/{seg['id']}", ("ready",))
    c = call("createCampaign", "POST", "/v1/email/campaigns", 201,
             json={"name": "IAM one", "template_id": tpl["id"], "segment_id": seg["id"]}).json()
    cpath = f"/v1/email/campaigns/{c['id']}"
    call("listCampaigns", "GET", "/v1/email/campaigns", 200)
    call("updateCampaign", "PATCH", cpath, 200, json={"name": "IAM first"})
    call("sendCampaign", "POST", cpath + "/send", 200, json={})
    assert until(cpath, ("sent",))["progress"]["sent"] == 1
    call("getCampaign", "GET", cpath, 200)
    held = call(None, "POST", "/v1/email/campaigns", 201,
                json={"name": "IAM two", "template_id": tpl["id"], "segment_id": seg["id"]}).json()
    hpath = f"/v1/email/campaigns/{held['id']}"
    call(None, "POST", hpath + "/send", 200, json={})  # the frequency cap defers it: still sending
    call("pauseCampaign", "POST", hpath + "/pause", 200)
    call("resumeCampaign", "POST", hpath + "/resume", 200)
    call("cancelCampaign", "POST", hpath + "/cancel", 200)
    call("deleteCampaign", "DELETE", hpath, 204)
    # its deferred batch waits on the queue for SQS's longest delay (15 min) only to be
    # dropped then (the campaign is gone): clear it, so the pipeline can be idle
    from rapport.pollers import plumbing_client

    sqs, queue = plumbing_client("sqs"), os.environ["RAPPORT_QUEUE_EMAIL_URL"]
    deadline = time.monotonic() + 30
    while True:
        sqs.purge_queue(QueueUrl=queue)
        time.sleep(1)  # a batch in flight may re-queue its deferral once more
        counts = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        if not any(int(v) for v in counts.values()):
            break
        assert time.monotonic() < deadline, counts
    unsubscribe = f"/v1/unsubscribe/{links.token(tenant.id, who['id'], c['id'])}"
    call("showUnsubscribe", "GET", unsubscribe, 200)
    call("unsubscribe", "POST", unsubscribe, 200, content=b"List-Unsubscribe=One-Click",
         headers={"Content-Type": "application/x-www-form-urlencoded"})


def _drive_journeys(call, tenant) -> None:
    """Journeys: a cart abandonment journey started by a checkout two hours old (the
    journeys queue, its run, a transactional email through SES, the customer's update),
    a birthday journey's activation (the backfill's Query and BatchWriteItem), pause,
    delete; the schedule's due-index Query runs on the pipeline's ticks."""
    import time
    from datetime import UTC, datetime, timedelta

    from crm.storage import BillingItem
    from tests.plan_helpers import set_plan

    set_plan(tenant, "growth")  # journeys are a plan feature; back to none (free) at the end
    who = call(None, "POST", "/v1/customers", 201, json={
        "email": "iam-cart@example.com", "birth_date": "1990-05-17"}).json()
    tpl = call(None, "POST", "/v1/email/templates", 201, json={
        "name": "IAM cart", "kind": "transactional", "subject": "Your cart",
        "html": "<p>Back to <a href='{{ event.data.url }}'>your cart</a></p>"}).json()
    steps = [{"type": "send_email", "template_id": tpl["id"]}, {"type": "update", "add_tags": ["iam-cart"]}]
    j = call("createJourney", "POST", "/v1/journeys", 201, json={
        "name": "IAM cart", "status": "active", "trigger": {"type": "checkout.started"}, "steps": steps}).json()
    path = f"/v1/journeys/{j['id']}"
    call("listJourneys", "GET", "/v1/journeys", 200)
    call("getJourney", "GET", path, 200)
    started = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    call("recordCheckout", "POST", "/v1/checkouts", 201, json={
        "customer_id": who["id"], "checkout_id": "iam-1", "started_at": started, "url": "https://shop.example/c"})
    deadline = time.monotonic() + 60
    runs = f"/v1/customers/{who['id']}/journeys"
    while not [r for r in call("listCustomerJourneyRuns", "GET", runs, 200).json()["data"] if r["status"] == "done"]:
        assert time.monotonic() < deadline, "the cart journey did not finish"
        time.sleep(0.2)
    birthday = call(None, "POST", "/v1/journeys", 201, json={
        "name": "IAM birthday", "status": "active", "trigger": {"type": "birthday"}, "steps": steps}).json()
    call("updateJourney", "PATCH", path, 200, json={"status": "paused"})
    call("deleteJourney", "DELETE", path, 204)
    call(None, "GET", f"/v1/journeys/{birthday['id']}", 200)
    BillingItem(tenant.ctx.prefix, "BILLING").delete()


def _drive_connections(call, tenant) -> None:
    """Connections with the partner connector against its local fake vendor: the sync is
    queued, then run by the sync_work consumer (KMS Decrypt, identity resolution, writes)."""
    import time

    from tests.fakes.acme import AcmeServer

    with AcmeServer() as acme:
        acme.put("c1", "2026-01-01T00:00:00Z", email="iam-acme@example.com", first="Ac")
        call("listConnectors", "GET", "/v1/connectors", 200)
        conn = call("createConnection", "POST", "/v1/connections", 201, json={
            "connector": "acme", "name": "iam", "schedule_minutes": 60,
            "config": {"base_url": acme.url, "api_token": acme.token}}).json()
        path = f"/v1/connections/{conn['id']}"
        call("listConnections", "GET", "/v1/connections", 200)
        call("getConnection", "GET", path, 200)
        call("updateConnection", "PATCH", path, 200, json={"config": {"api_token": acme.token}})
        call("checkConnection", "POST", path + "/check", 200)
        run = call("syncConnection", "POST", path + "/sync", 202, json={"mode": "backfill"}).json()
        deadline = time.monotonic() + 60
        while call("getRun", "GET", f"{path}/runs/{run['id']}", 200).json()["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "the sync run did not finish"
            time.sleep(0.2)
        call("listRuns", "GET", path + "/runs", 200)
        from connectors import connections

        queued = connections.start_run(tenant.ctx, conn["id"], "incremental", "cli")  # no message: stays queued
        call("cancelRun", "POST", f"{path}/runs/{queued.id}/cancel", 200)
        call("deleteConnection", "DELETE", path, 204)
    # a vendor webhook: verified, de-duplicated, queued, then written by sync_work
    from tests.fakes.shopify import FakeShopify

    shop = call(None, "POST", "/v1/connections", 201, json={
        "connector": "shopify", "name": "iam-shop",
        "config": {"shop_url": "https://iam.myshopify.com", "access_token": "t", "webhook_secret": "s"}}).json()
    headers, body = FakeShopify.webhook("customers/create", {
        "id": 77, "email": "iam-hook@example.com", "first_name": "Hook",
        "updated_at": "2026-01-01T00:00:00-05:00", "created_at": "2026-01-01T00:00:00-05:00"}, "s")
    call("receiveWebhook", "POST", f"/v1/hooks/{shop['id']}", 202, headers=headers, content=body)
    call(None, "POST", f"/v1/hooks/{shop['id']}", 200, headers=headers, content=body)  # a replay


def _drive_shipments(call) -> None:
    """A parcel registered through an EasyPost connection (the tracker created at its fake),
    found by tracking number, by id and by order, and a signed tracker webhook written by
    sync_work (the schedule's index Query runs on the pipeline's ticks)."""
    from tests.fakes.easypost import FakeEasyPost

    with FakeEasyPost() as fake:
        con = call(None, "POST", "/v1/connections", 201, json={
            "connector": "easypost", "name": "iam-ship",
            "config": {"api_key": fake.api_key, "webhook_secret": "s", "base_url": fake.url + "/v2"}}).json()["id"]
        who = call(None, "POST", "/v1/customers", 201, json={"email": "iam-ship@example.com"}).json()["id"]
        order = call(None, "POST", "/v1/orders", 201, json={
            "customer": {"id": who}, "source": "pos", "external_id": "iam-ship", "channel": "web", "currency": "EUR",
            "placed_at": "2026-01-01T00:00:00Z", "total": 100,
            "lines": [{"sku": "s", "name": "n", "quantity": 1, "unit_price": 100}]}).json()["id"]
        body = {"order_id": order, "carrier": "USPS", "tracking_number": "IAM0001", "connection_id": con}
        sid = call("createShipment", "POST", "/v1/shipments", 201, json=body).json()["id"]
        call(None, "POST", "/v1/shipments", 200, json=body)  # a repeat
        call("findShipments", "GET", "/v1/shipments", 200, params={"tracking_number": "IAM0001"})
        call("getShipment", "GET", f"/v1/shipments/{sid}", 200)
        call("listOrderShipments", "GET", f"/v1/orders/{order}/shipments", 200)
        fake.scan("IAM0001", "delivered", "2026-01-03T00:00:00Z")
        headers, payload = fake.signed_webhook("s", "IAM0001")
        call(None, "POST", f"/v1/hooks/{con}", 202, headers=headers, content=payload)


def _drive_accounts(call, tenant) -> None:
    """B2B accounts: create (guards in a transaction), get, a PATCH with If-Match, list,
    the name search (gsi2) and the external-id lookup, a contact linked, listed and
    unlinked, the account 360 (Query + BatchGetItem), and invoices (written by the sink as
    an ERP sync writes them) listed by account and read by id."""
    from connectors import sink
    from connectors.sdk.base import InvoiceRecord

    acc = call("createAccount", "POST", "/v1/accounts", 201, headers={"Idempotency-Key": "acc1"},
               json={"name": "IAM Corp", "external_ids": {"erpnext": "IAM-C"}}).json()
    path = f"/v1/accounts/{acc['id']}"
    call("getAccount", "GET", path, 200)
    call("updateAccount", "PATCH", path, 200, headers={"If-Match": f'"{acc["version"]}"'},
         json={"payment_terms": "Net 30"})
    call("listAccounts", "GET", "/v1/accounts", 200)
    call(None, "GET", "/v1/accounts", 200, params={"name": "iam"})
    call("lookupAccounts", "GET", "/v1/accounts/lookup", 200, params={"source": "erpnext", "external_id": "IAM-C"})
    who = call(None, "POST", "/v1/customers", 201, json={"email": "iam-contact@example.com"}).json()["id"]
    call("linkAccountContact", "POST", path + "/contacts", 201, json={"customer_id": who, "role": "Buyer"})
    call("listAccountContacts", "GET", path + "/contacts", 200)
    sink.write(tenant.ctx, "erpnext", "sales_invoices", [InvoiceRecord(
        "IAM-INV", "2026-01-02T00:00:00Z", "IAM-INV", "EUR", "2026-01-01T00:00:00Z", 1000, 1000, account="IAM-C")])
    call("getAccount360", "GET", path + "/360", 200)
    invoices = call("listInvoices", "GET", "/v1/invoices", 200, params={"account_id": acc["id"]}).json()["data"]
    call("getInvoice", "GET", f"/v1/invoices/{invoices[0]['id']}", 200)
    call("unlinkAccountContact", "DELETE", f"{path}/contacts/{who}", 204)


def _drive_billing(call, double) -> None:
    """Billing against the Stripe double: the plan, a checkout paid (its signed webhooks: the
    event guard, the refresh's conditional update), a duplicate delivery, the portal."""
    import json as _json
    import time

    from rapport.stripe_double_delivery import signature
    from tests.stripe_helpers import complete_checkout, stripe_client

    call("getBilling", "GET", "/v1/billing", 200)
    session = call("createCheckout", "POST", "/v1/billing/checkout", 201, json={"plan": "starter"}).json()
    call(None, "POST", "/v1/billing/checkout", 200, json={"plan": "starter"})  # the open one again
    call(None, "GET", "/v1/billing", 200)  # looks the open session up
    complete_checkout(stripe_client(double.url), session["session_id"])
    assert double.wait_idle(30), "the Stripe double's deliveries were not all answered"
    event = next(e for e in double.events() if e["type"] == "invoice.paid")
    body = _json.dumps({k: v for k, v in event.items() if k not in ("delivered", "attempts")}).encode()
    headers = {"Stripe-Signature": signature(double.webhook_secret, body, int(time.time())),
               "Content-Type": "application/json"}
    call("receiveStripeWebhook", "POST", "/v1/billing/stripe/webhook", 200, content=body, headers=headers)
    call(None, "POST", "/v1/billing/checkout", 409, json={"plan": "growth"})  # a subscription is live
    call("createPortalSession", "POST", "/v1/billing/portal", 200)
    assert call(None, "GET", "/v1/billing", 200).json()["plan"] == "starter"


def _drive_csv_import(call) -> None:
    """A CSV import: an upload URL (presigned, no AWS call), the client's PUT of the file,
    and the sync that checks the object (HeadObject) and streams it (GetObject)."""
    import time

    import httpx

    conn = call(None, "POST", "/v1/connections", 201, json={
        "connector": "csv", "name": "iam csv", "config": {"mapping": {"E-mail": "email", "Id": "external_id"}}}).json()
    path = f"/v1/connections/{conn['id']}"
    upload = call("createUpload", "POST", path + "/uploads", 201).json()
    put = httpx.put(upload["url"], headers=upload["headers"], timeout=30,
                    content=b"Id,E-mail\r\nx1,iam-csv@example.com\r\nx2,not-an-email\r\n")
    assert put.status_code == 200, put.text
    run = call(None, "POST", path + "/sync", 202, json={"mode": "backfill", "upload_id": upload["upload_id"]}).json()
    deadline = time.monotonic() + 60
    while (done := call(None, "GET", f"{path}/runs/{run['id']}", 200).json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "the import did not finish"
        time.sleep(0.2)
    assert done["status"] == "succeeded" and done["streams"]["customers"]["created"] == 1, done


def test_policy_allows_every_call_and_nothing_unused(tenant, anon, stripe_double, recorded, event_pipeline,
                                                     dev_stack, request):
    served = _drive_every_route(tenant, anon, stripe_double)
    routes = {op.operation_id for op in OPERATIONS}
    assert routes <= served, f"drive these new routes here too: {sorted(routes - served)}"
    assert event_pipeline.wait_idle(timeout=120), "the events of these requests were not all handled"
    from rapport.pollers import plumbing_client

    sqs = plumbing_client("sqs")  # the test's own look, not recorded
    given_up = {name: int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                    "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
                for name, url in {**dev_stack.queues.dead_letter,
                                  "stream": dev_stack.queues.stream_dead_letter}.items()}
    assert not any(given_up.values()), f"events the handlers never handled, by DLQ: {given_up}"

    used: dict[tuple[str, str], int] = defaultdict(int)
    for service, operation, params in list(recorded):
        if service == "dynamodb":
            for action, kind, table in _authorizations(operation, params):
                assert table == "rapport-test", (operation, table)
                used[(action, kind)] += 1
        elif service == "sqs":
            used[_sqs_authorization(operation, params)] += 1
        elif service == "sesv2":
            for pair in _ses_authorizations(operation, params):
                used[pair] += 1
        else:
            used[_other_authorization(service, operation, params)] += 1
    if "createUpload" in served:
        # the client PUTs the file with the presigned URL: S3 authorizes that PUT as the
        # function that signed it, a call botocore never sees here
        used[("s3:PutObject", "uploads")] += 1
    needed = set(used) | _event_source_needs()
    granted = _granted()
    missing = needed - granted
    assert not missing, f"the functions would get AccessDenied for {sorted(missing)}"
    unused = granted - needed
    assert not unused, (f"the policy allows {sorted(unused)}, which neither a route, an event "
                        "handler nor an event source used: remove it")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n[deploy] authorizations used by every route and event handler: "
              + ", ".join(f"{a.split(':')[1]}@{k}×{n}" for (a, k), n in sorted(used.items()))
              + "; by the event sources: "
              + ", ".join(f"{a.split(':')[1]}@{k}" for a, k in sorted(_event_source_needs())),
              end="", flush=True)
