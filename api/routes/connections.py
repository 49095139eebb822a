"""/v1/connectors, /v1/connections (install, check, sync, runs) and /v1/hooks (vendor webhooks)."""

from __future__ import annotations

import os
from typing import Any

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "connections"
_ID = "/v1/connections/{connection_id}"
MAX_HOOK_BYTES = 200 * 1024
DEFAULT_STAGE = "api"  # Chalice's API Gateway stage (.chalice/config.json api_gateway_stage)  # what fits an SQS message with its envelope


def public_base(headers: dict[str, str]) -> str:
    """Where vendors reach this API: ``RAPPORT_PUBLIC_URL`` when set (a custom domain),
    else the request's own host (with the stage for an execute-api host)."""
    configured = os.environ.get("RAPPORT_PUBLIC_URL", "").strip().rstrip("/")
    if configured:
        return configured
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    host = (lowered.get("x-forwarded-host") or lowered.get("host") or "").split(",")[0].strip()
    if not host:
        return ""
    proto = (lowered.get("x-forwarded-proto") or "").split(",")[0].strip()
    if not proto:
        proto = "http" if host.startswith(("127.0.0.1", "localhost", "[::1]")) else "https"
    stage = ""
    if host.endswith(".amazonaws.com"):  # an execute-api URL carries the stage in its path
        try:
            stage = (bp.current_request.context or {}).get("stage") or ""
        except Exception:  # noqa: BLE001 - no current request (a direct call)
            stage = ""
        stage = "/" + (stage or DEFAULT_STAGE)
    return f"{proto}://{host}{stage.rstrip('/')}"


def _absolute(req: Request, conn: Any) -> Any:
    """The connection with ``webhook_url`` absolute: what to paste into the vendor's settings."""
    if conn.webhook_url and conn.webhook_url.startswith("/"):
        conn.webhook_url = public_base(req.headers) + conn.webhook_url
    return conn


@endpoint(
    bp,
    "/v1/connectors",
    "GET",
    operation_id="listConnectors",
    tag=TAG,
    scope="customers:read",
    summary="The connectors installed (built-in and partner), with their config schemas",
    responses={200: "ConnectorList"},
)
def list_connectors(req: Request) -> Result:
    from connectors import connections

    return Result(200, {"data": connections.list_connectors()})


@endpoint(
    bp,
    "/v1/connections",
    "POST",
    operation_id="createConnection",
    tag=TAG,
    scope="admin",
    summary="Install a connector: its config is validated; secret fields are sealed with KMS",
    body="ConnectionCreate",
    responses={201: "Connection"},
    idempotent=True,
)
def create_connection(req: Request) -> Result:
    from connectors import connections

    conn = _absolute(req, connections.create(req.ctx, req.body))
    return Result(201, conn, {"ETag": f'"{conn.version}"', "Location": f"/v1/connections/{conn.id}"})


@endpoint(
    bp,
    "/v1/connections",
    "GET",
    operation_id="listConnections",
    tag=TAG,
    scope="admin",
    summary="The tenant's connections",
    query="PageQuery",
    responses={200: "ConnectionPage"},
)
def list_connections(req: Request) -> Result:
    from connectors import connections

    page = connections.list_connections(req.ctx, limit=req.query.limit, cursor=req.query.cursor)
    return Result(200, {"data": [_absolute(req, c) for c in page.items], "next_cursor": page.next_cursor})


@endpoint(
    bp,
    _ID,
    "GET",
    operation_id="getConnection",
    tag=TAG,
    scope="admin",
    summary="A connection (secrets are never returned, only which are set)",
    responses={200: "Connection"},
    errors=(404,),
)
def get_connection(req: Request) -> Result:
    from connectors import connections

    conn = _absolute(req, connections.get(req.ctx, req.params["connection_id"]))
    return Result(200, conn, {"ETag": f'"{conn.version}"'})


@endpoint(
    bp,
    _ID,
    "PATCH",
    operation_id="updateConnection",
    tag=TAG,
    scope="admin",
    summary="Change a connection's name, config (secrets replaced only when given), schedule or status",
    body="ConnectionPatch",
    responses={200: "Connection"},
    errors=(404, 412),
    if_match=True,
)
def update_connection(req: Request) -> Result:
    from connectors import connections

    conn = _absolute(req, connections.update(req.ctx, req.params["connection_id"], req.body, req.if_match))
    return Result(200, conn, {"ETag": f'"{conn.version}"'})


@endpoint(
    bp,
    _ID,
    "DELETE",
    operation_id="deleteConnection",
    tag=TAG,
    scope="admin",
    summary="Remove a connection, its state and runs (synced customers and orders stay); "
    "a run in progress is cancelled first",
    responses={204: None},
    errors=(404,),
)
def delete_connection(req: Request) -> Result:
    from connectors import connections

    connections.delete(req.ctx, req.params["connection_id"])
    return Result(204)


@endpoint(
    bp,
    f"{_ID}/check",
    "POST",
    operation_id="checkConnection",
    tag=TAG,
    scope="admin",
    summary="Try the connection's credentials against the vendor: 200 ok, or 422 check_failed "
    "with the vendor's reason (its status, never its body)",
    responses={200: "CheckResult"},
    errors=(404, 422),
)
def check_connection(req: Request) -> Result:
    from connectors import connections

    return Result(200, connections.check(req.ctx, req.params["connection_id"]))


@endpoint(
    bp,
    f"{_ID}/sync",
    "POST",
    operation_id="syncConnection",
    tag=TAG,
    scope="admin",
    summary="Queue a sync run (backfill or incremental); 409 names the run in progress",
    body="SyncRequest",
    responses={202: "Run"},
    errors=(404, 409),
    idempotent=True,
)
def sync_connection(req: Request) -> Result:
    from connectors import connections, messages

    cid = req.params["connection_id"]
    run = connections.start_run(req.ctx, cid, req.body.mode, "api", upload_id=req.body.upload_id)
    messages.send([messages.sync_message(req.ctx.tenant_id, cid, run.id)])
    return Result(202, run, {"Location": f"/v1/connections/{cid}/runs/{run.id}"})


@endpoint(
    bp,
    f"{_ID}/runs",
    "GET",
    operation_id="listRuns",
    tag=TAG,
    scope="admin",
    summary="The connection's runs, newest first: status, per-stream counts, rejected records, duration",
    query="PageQuery",
    responses={200: "RunPage"},
    errors=(404,),
)
def list_runs(req: Request) -> Result:
    from connectors import connections

    page = connections.list_runs(req.ctx, req.params["connection_id"], limit=req.query.limit, cursor=req.query.cursor)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    f"{_ID}/runs/{{run_id}}",
    "GET",
    operation_id="getRun",
    tag=TAG,
    scope="admin",
    summary="One run",
    responses={200: "Run"},
    errors=(404,),
)
def get_run(req: Request) -> Result:
    from connectors import connections

    connections.load(req.ctx, req.params["connection_id"])
    return Result(200, connections.get_run(req.ctx, req.params["connection_id"], req.params["run_id"]))


@endpoint(
    bp,
    f"{_ID}/runs/{{run_id}}/cancel",
    "POST",
    operation_id="cancelRun",
    tag=TAG,
    scope="admin",
    summary="Cancel a queued, running or paused run: it ends cancelled at once and its worker "
    "stops at its next page; 409 if it has already ended",
    responses={200: "Run"},
    errors=(404, 409),
)
def cancel_run(req: Request) -> Result:
    from connectors import connections

    return Result(200, connections.cancel_run(req.ctx, req.params["connection_id"], req.params["run_id"]))


@endpoint(
    bp,
    "/v1/hooks/{connection_id}",
    "POST",
    operation_id="receiveWebhook",
    tag="hooks",
    scope=None,
    summary="A vendor's webhook: the signature is checked before the body is read (401 if "
    "missing or forged), the delivery id de-duplicated, the work queued",
    responses={202: "HookAccepted", 200: "HookAccepted"},
    errors=(401, 403, 404, 409, 413, 422),
    max_body=MAX_HOOK_BYTES,
)
def receive_webhook(req: Request) -> Result:
    from connectors import hooks

    accepted, delivery_id = hooks.receive(req.params["connection_id"], req.headers, req.raw)
    return Result(
        202 if accepted else 200, {"status": "queued" if accepted else "duplicate", "delivery_id": delivery_id}
    )


@endpoint(
    bp,
    f"{_ID}/uploads",
    "POST",
    operation_id="createUpload",
    tag=TAG,
    scope="admin",
    summary="A presigned URL to PUT a file to (file connectors: the CSV import); then "
    "POST …/sync with its upload_id. 422 for connectors that read no files",
    responses={201: "UploadCreated"},
    errors=(404, 422),
)
def create_upload(req: Request) -> Result:
    from connectors import connections, uploads

    cid = req.params["connection_id"]
    item, _ = connections.load(req.ctx, cid)
    if connections.connector(item.connector).kind != "file":
        from crm.errors import Invalid

        raise Invalid(
            f"the {item.connector} connector reads no files: uploads are for file connectors such as csv",
            field="connection_id",
            code="not_a_file_connector",
        )
    upload = uploads.create(req.ctx, cid)
    return Result(
        201,
        {
            "upload_id": upload.upload_id,
            "url": upload.url,
            "method": "PUT",
            "headers": {"Content-Type": uploads.CONTENT_TYPE},
            "expires_at": upload.expires_at,
            "max_bytes": uploads.MAX_BYTES,
        },
    )
