"""What the agents API takes and returns (api/routes/agents.py; the protocol in
docs/api.md "Agents"). A key appears only in :class:`IssuedAgent`, the answer to a create
or a re-key."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from crm.agents.hlc import PATTERN as HLC_PATTERN
from crm.customers.schemas import PLAIN_SOURCE_PATTERN, Timestamp

AGENT_ID_PATTERN = r"^agt_[0-9a-hjkmnp-tv-z]{26}$"
Hlc = Annotated[str, StringConstraints(pattern=HLC_PATTERN)]
CustomerId = Annotated[str, StringConstraints(pattern=r"^cus_[0-9A-HJKMNP-TV-Z]{26}$")]
MAX_RECORDS = 100


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentCreate(_Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    source: Annotated[str, StringConstraints(pattern=PLAIN_SOURCE_PATTERN)] | None = Field(
        default=None,
        description="the source of the external ids its records carry; default agent:<agent id>. At most one "
        "agent per source (409 source_taken)",
    )


class Agent(BaseModel):
    id: str
    name: str
    source: str
    status: Literal["active", "revoked"]
    online: bool = Field(description="a heartbeat within the last 120 s")
    version: str | None = Field(description="the agent's version, from its last heartbeat")
    created_at: str
    last_seen_at: str | None = Field(description="its last heartbeat")
    last_sync_at: str | None
    lag_seconds: float | None
    queued: int | None = Field(description="records waiting in the agent's outbox (its heartbeat)")
    parked: int | None = Field(description="records the agent holds back locally (its heartbeat)")
    rejected: int = Field(description="records the server refused and parked (GET …/parked)")
    conflicts: int = Field(description="conflicts a rule resolved (GET …/conflicts)")
    last_error: str | None
    acked_seq: int = Field(description="the highest upload seq acknowledged")
    key_prefix: str = Field(description="the visible start of its current key")


class IssuedAgent(Agent):
    key: str = Field(description="the agent's whole key: shown only in this response")


class AgentList(BaseModel):
    data: list[Agent]


class AgentHeartbeat(_Strict):
    version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    queued: int = Field(ge=0, le=10**12)
    parked: int = Field(ge=0, le=10**12)
    lag_seconds: float | None = Field(default=None, ge=0, le=10**10)
    last_sync_at: Timestamp | None = Field(default=None, description="an ISO-8601 time with its timezone")
    last_error: Annotated[str, StringConstraints(max_length=500)] | None = None
    hlc: Hlc


class AgentHeartbeatResult(BaseModel):
    agent: Agent
    hlc: str


class AgentUploadRecord(BaseModel):
    """Only ``seq`` is checked for the whole request; the rest record by record (a bad one
    is rejected and parked, the others apply)."""

    model_config = ConfigDict(extra="allow")
    seq: int = Field(ge=1, le=10**15)


class AgentUpload(_Strict):
    records: list[AgentUploadRecord] = Field(max_length=MAX_RECORDS)


class AgentFieldConflict(BaseModel):
    field: str
    winner: Literal["local", "cloud"]
    rule: str


class AgentUploadResult(BaseModel):
    seq: int
    status: Literal["created", "updated", "unchanged", "duplicate", "rejected"]
    customer_id: str | None = None
    order_id: str | None = None
    reason: str | None = None
    errors: list[dict[str, Any]] | None = None
    conflicts: list[AgentFieldConflict] = []
    values: dict[str, JsonValue] = {}
    updated_at: str | None = None


class AgentUploadResponse(BaseModel):
    results: list[AgentUploadResult]
    acked_seq: int
    hlc: str


class AgentFetch(_Strict):
    customer_ids: list[CustomerId] = Field(min_length=1, max_length=100)


class FetchedProfile(BaseModel):
    name: dict[str, Any] | None = None
    email: str | None = None
    phone: str | None = None
    birth_date: str | None = None
    gender: str | None = None
    locale: str | None = None
    tags: list[str] = []
    attributes: dict[str, JsonValue] = {}


class FetchedCustomer(BaseModel):
    customer_id: str
    status: str
    updated_at: str
    external_id: str | None = Field(description="the external id of the agent's source, if linked")
    merged_into: str | None
    profile: FetchedProfile


class AgentFetchResult(BaseModel):
    data: list[FetchedCustomer]
    hlc: str


class AgentParked(BaseModel):
    seq: int
    kind: str
    external_id: str | None
    reason: str
    errors: list[dict[str, Any]]
    parked_at: str


class AgentParkedPage(BaseModel):
    data: list[AgentParked]
    next_cursor: str | None


class AgentConflict(BaseModel):
    id: str
    seq: int
    customer_id: str | None
    external_id: str | None
    field: str
    local_value: JsonValue
    cloud_value: JsonValue
    winner: Literal["local", "cloud"]
    rule: str
    local_hlc: str
    cloud_hlc: str
    resolved_at: str


class AgentConflictPage(BaseModel):
    data: list[AgentConflict]
    next_cursor: str | None
