"""API models of connectors, connections and runs (the OpenAPI document is built from them)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ConnectionName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ConnectorName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Mode = Literal["backfill", "incremental"]
RunStatus = Literal["queued", "running", "paused", "succeeded", "failed", "cancelled"]
ErrorCode = Literal["auth", "config", "rate_limited", "vendor", "stalled", "internal"]
ScheduleMinutes = Annotated[int, Field(ge=15, le=1440, description="incremental sync every N minutes; null: only on request")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectorInfo(BaseModel):
    name: str
    title: str
    kind: Literal["ecommerce", "erp", "scm", "file"]
    version: str
    streams: list[str]
    webhooks: bool
    config_schema: dict[str, Any] = Field(description="JSON Schema of `config`; fields marked "
                                          "x-rapport-secret are write-only and stored encrypted")


class ConnectorList(BaseModel):
    data: list[ConnectorInfo]


class ConnectionCreate(_Strict):
    connector: ConnectorName
    name: ConnectionName
    config: dict[str, Any] = Field(description="validated against the connector's config_schema")
    schedule_minutes: ScheduleMinutes | None = None


class ConnectionPatch(_Strict):
    """Given fields replace. In ``config``, given keys replace (secrets included); omitted
    keys, secrets in particular, keep their value."""

    name: ConnectionName | None = None
    config: dict[str, Any] | None = None
    schedule_minutes: ScheduleMinutes | None = None
    status: Literal["active", "paused"] | None = None


class LastError(BaseModel):
    """Why the connection's last run failed (cleared by a run that succeeds)."""

    code: ErrorCode = Field(description="auth: reconnect (the vendor refused the credentials); config: fix "
                            "the URL or settings (PATCH); rate_limited: throttled past the run's budget; "
                            "vendor: the vendor kept failing; stalled: the run stopped checkpointing; "
                            "internal: our bug, quote trace_id")
    detail: str
    run_id: str
    at: str
    trace_id: str | None = None


class Connection(BaseModel):
    id: str
    connector: str
    name: str
    config: dict[str, Any] = Field(description="non-secret fields only")
    secrets_set: list[str] = Field(description="which secret fields have a value (never the values)")
    schedule_minutes: int | None = None
    status: Literal["active", "paused"]
    webhook_url: str | None = Field(default=None, description="the absolute URL to paste into the vendor's "
                                     "webhook settings (connectors that take webhooks)")
    active_run: str | None = None
    last_error: LastError | None = None
    created_at: str
    updated_at: str
    version: int


class ConnectionPage(BaseModel):
    data: list[Connection]
    next_cursor: str | None = None


class CheckResult(BaseModel):
    """200: the vendor answered and the credentials work. A failed check is a 422
    problem (code ``check_failed``) with ``ok: false``, ``error`` (auth, config,
    rate_limited, vendor) and the vendor's status as ``vendor_status``."""

    ok: bool
    detail: str


class SyncRequest(_Strict):
    mode: Mode = "incremental"
    upload_id: Annotated[str, StringConstraints(pattern=r"^upl_[0-9A-Z]{26}$")] | None = Field(
        default=None, description="file connectors: the upload to import")


class StreamCounts(BaseModel):
    pages: int = 0
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    conflicts: int = 0
    total: int | None = Field(default=None, description="the vendor's count, when it tells")
    done: bool = False


class RejectedRecord(BaseModel):
    stream: str
    external_id: str | None = None
    reason: str
    errors: list[dict[str, Any]] = []
    conflict_id: str | None = Field(default=None, description="rejected for an identity conflict: review it "
                                    "in GET /v1/identity/conflicts, then POST /v1/identity/conflicts/{conflict_id}/resolve")


class Run(BaseModel):
    id: str
    connection_id: str
    mode: Mode
    trigger: Literal["api", "schedule", "cli", "webhook"]
    status: RunStatus
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    streams: dict[str, StreamCounts] = {}
    rejected: list[RejectedRecord] = Field(default=[], description="the first 100 rejected records")
    rejected_total: int = 0
    error: ErrorCode | None = Field(default=None, description="failed: why, classified (see LastError.code)")
    error_detail: str | None = Field(default=None, description="failed: what happened, in words (never a secret "
                                     "or the vendor's body)")
    trace_id: str | None = Field(default=None, description="internal errors: the id of the log line")
    resume_at: str | None = Field(default=None, description="paused: when the run continues")
    invocations: int = 0
    upload_id: str | None = None


class RunPage(BaseModel):
    data: list[Run]
    next_cursor: str | None = None


class HookAccepted(BaseModel):
    status: Literal["queued", "duplicate"]
    delivery_id: str


class UploadCreated(BaseModel):
    """Where to PUT a file for a file connector (the CSV import). Send exactly ``method``
    with ``headers`` to ``url`` before ``expires_at``, then ``POST …/sync`` with
    ``{"mode": "backfill", "upload_id"}``."""

    upload_id: str = Field(description="give it to POST …/sync to import the file")
    url: str = Field(description="presigned S3 URL, valid 15 minutes")
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(description="send these headers with the PUT (the URL is signed for them)")
    expires_at: str
    max_bytes: int = Field(description="the largest file a run imports; a larger one gets 422 upload_too_large on sync")
