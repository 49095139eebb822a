"""/v1/webhooks/endpoints: where the tenant's events are sent (crm/webhooks; docs/webhooks.md).
CRUD, the signing secret's rotation and a signed test ping sent at once. Scopes
``webhooks:read`` / ``webhooks:write`` (admin implies both). A secret appears only in the
answer to a create or a rotation."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "webhooks"
READ, WRITE = "webhooks:read", "webhooks:write"
_LIST = "/v1/webhooks/endpoints"
_ID = "/v1/webhooks/endpoints/{endpoint_id}"
PING = "webhook.ping"


def _etag(endpoint: Any) -> dict[str, str]:
    return {"ETag": f'"{endpoint.version}"'}


@endpoint(
    bp,
    _LIST,
    "POST",
    operation_id="createWebhookEndpoint",
    tag=TAG,
    scope=WRITE,
    summary="Add an endpoint: an https URL to a public host, the event types it gets (types, families such as "
    "order.*, or *). 201 with its signing secret, shown this once (an Idempotency-Key replay omits it); "
    "422 naming url or types; 409 webhook_endpoint_limit past 20 endpoints",
    body="WebhookEndpointCreate",
    responses={201: "WebhookEndpointWithSecret"},
    errors=(409,),
    idempotent=True,
)
def create_endpoint(req: Request) -> Result:
    from crm.webhooks import endpoints

    created = endpoints.create(req.ctx, req.body)
    without = created.model_copy(update={"secret": None})
    headers = {**_etag(created), "Location": f"{_LIST}/{created.id}"}
    return Result(201, created, headers, replay_body=without)


@endpoint(
    bp,
    _LIST,
    "GET",
    operation_id="listWebhookEndpoints",
    tag=TAG,
    scope=READ,
    summary="The tenant's webhook endpoints, oldest first (never their secrets)",
    query="PageQuery",
    responses={200: "WebhookEndpointPage"},
)
def list_endpoints(req: Request) -> Result:
    from crm.webhooks import endpoints

    page = endpoints.list_(req.ctx, req.query.cursor, req.query.limit)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    _ID,
    "GET",
    operation_id="getWebhookEndpoint",
    tag=TAG,
    scope=READ,
    summary="A webhook endpoint (never its secret): URL, types, state; one GetItem",
    responses={200: "WebhookEndpoint"},
    errors=(404,),
)
def get_endpoint(req: Request) -> Result:
    from crm.webhooks import endpoints

    found = endpoints.get(req.ctx, req.params["endpoint_id"])
    return Result(200, found, _etag(found))


@endpoint(
    bp,
    _ID,
    "PATCH",
    operation_id="updateWebhookEndpoint",
    tag=TAG,
    scope=WRITE,
    summary="Change an endpoint's url, types, description, enabled or ordered (the fields given replace); "
    "enabled: true clears disabled_reason and failing_since; If-Match with a stale ETag gets 412",
    body="WebhookEndpointPatch",
    responses={200: "WebhookEndpoint"},
    errors=(404, 409, 412),
    if_match=True,
)
def update_endpoint(req: Request) -> Result:
    from crm.webhooks import endpoints

    updated = endpoints.update(req.ctx, req.params["endpoint_id"], req.body, req.if_match)
    return Result(200, updated, _etag(updated))


@endpoint(
    bp,
    _ID,
    "DELETE",
    operation_id="deleteWebhookEndpoint",
    tag=TAG,
    scope=WRITE,
    summary="Remove an endpoint: nothing more is sent to it; If-Match with a stale ETag gets 412",
    responses={204: None},
    errors=(400, 404, 412),
    if_match=True,
)
def delete_endpoint(req: Request) -> Result:
    from crm.webhooks import endpoints

    endpoints.delete(req.ctx, req.params["endpoint_id"], req.if_match)
    return Result(204)


@endpoint(
    bp,
    f"{_ID}/rotate-secret",
    "POST",
    operation_id="rotateWebhookSecret",
    tag=TAG,
    scope=WRITE,
    summary="A new signing secret, shown this once; the old one keeps signing beside it (a second "
    "signature) for overlap_seconds (default 86400, at most 7 days, 0: it stops at once). Body {} for the default; "
    "an Idempotency-Key replay rotates nothing and omits the secret",
    body="WebhookSecretRotation",
    responses={200: "WebhookEndpointWithSecret"},
    errors=(404, 409),
    idempotent=True,
)
def rotate_secret(req: Request) -> Result:
    from crm.webhooks import endpoints

    rotated = endpoints.rotate_secret(req.ctx, req.params["endpoint_id"], req.body.overlap_seconds)
    return Result(200, rotated, _etag(rotated), replay_body=rotated.model_copy(update={"secret": None}))


@endpoint(
    bp,
    f"{_ID}/test",
    "POST",
    operation_id="testWebhookEndpoint",
    tag=TAG,
    scope=WRITE,
    summary="Send a signed webhook.ping to the endpoint now (enabled or not) and say what came back: "
    "status, latency_ms, the first 200 characters of the answer, or why no answer came (timeout, "
    "refused, TLS, a redirect). 200 either way; nothing is stored",
    responses={200: "WebhookTestResult"},
    errors=(404,),
)
def ping_endpoint(req: Request) -> Result:
    import json

    from ulid import ULID

    from connectors import outbound
    from crm import clock
    from crm.webhooks import endpoints, signing
    from crm.webhooks.schemas import WebhookTestResult

    found = endpoints.get(req.ctx, req.params["endpoint_id"])
    now = clock.now()
    msg_id = f"msg_{ULID()}"
    body = json.dumps(
        {"type": PING, "timestamp": clock.iso(now), "data": {"endpoint_id": found.id}}, separators=(",", ":")
    )
    headers = signing.headers(endpoints.signing_secrets(req.ctx, found), msg_id, now, body)
    attempt = outbound.post(found.url, headers, body)
    return Result(
        200,
        WebhookTestResult(
            ok=attempt.ok,
            webhook_id=msg_id,
            status=attempt.status,
            latency_ms=attempt.latency_ms,
            excerpt=attempt.excerpt,
            error=attempt.error,
        ),
    )


@endpoint(
    bp,
    f"{_ID}/deliveries",
    "GET",
    operation_id="listWebhookDeliveries",
    tag=TAG,
    scope=READ,
    summary="The endpoint's delivery log, newest first, kept 30 days: each change's status and its attempts "
    "(time, status, latency, the answer's first 200 characters, the error in words); 1 Query",
    query="WebhookDeliveryQuery",
    responses={200: "WebhookDeliveryPage"},
    errors=(404,),
)
def list_deliveries(req: Request) -> Result:
    from crm.webhooks import deliveries

    q = req.query
    data, cursor = deliveries.log(req.ctx, req.params["endpoint_id"], q.status, q.cursor, q.limit)
    return Result(200, {"data": data, "next_cursor": cursor})


@endpoint(
    bp,
    f"{_ID}/replay",
    "POST",
    operation_id="replayWebhookDeliveries",
    tag=TAG,
    scope=WRITE,
    summary="Send changes again, with the same webhook-id (receivers de-duplicate): by event_ids (at most 100) or "
    "committed in since/until (at most 10,000). 202: they are due now; the log shows the new attempts",
    body="WebhookReplay",
    responses={202: "WebhookReplayResult"},
    errors=(404,),
)
def replay(req: Request) -> Result:
    from crm.webhooks import deliveries

    b = req.body
    count = deliveries.replay(req.ctx, req.params["endpoint_id"], b.event_ids, b.since, b.until)
    return Result(202, {"replayed": count})
