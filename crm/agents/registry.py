"""The tenant's on-premise agents and their keys.

Storage: ``T#<tenant>#AGENTS`` / ``<agent id>`` (``AgentItem``) and a source guard
``SRC#<source>`` (``AgentSourceItem``) in the same partition, at most :data:`MAX_AGENTS`
agents, so the list is one Query. An agent's key is an API key (crm/apikeys.py) with the
scope ``agent`` and the agent's id; the agent item names its current key (``key_id``), so
a re-keyed or revoked agent's old key is refused on its routes at once, whatever the key
cache holds.

DynamoDB requests (docs/performance.md):
- create: 1 Query (the limit, the sources) + 1 TransactWriteItems (agent, source guard,
  key, the caller's key still live)
- list: 1 Query; get / me: 1 GetItem
- revoke: 1 GetItem + 1 TransactWriteItems (agent, key)
- reissue: 1 GetItem + 1 TransactWriteItems (agent, new key, old key, caller live)
- heartbeat: 1 UpdateItem (conditional on the key being the agent's current one)
- advance (after an upload): 1 UpdateItem (acked_seq only forward, by a condition; a
  second one for the counts when another batch moved it further meanwhile)
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from crm import apikeys, clock
from crm.agents.schemas import AGENT_ID_PATTERN, Agent, AgentCreate, AgentHeartbeat, IssuedAgent
from crm.context import TenantContext
from crm.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from crm.storage import AgentItem, AgentSourceItem, ApiKeyItem, condition_failed
from crm.tx import Cancelled, Tx

AGENTS = "AGENTS"
AGENT_ID = re.compile(AGENT_ID_PATTERN)
MAX_AGENTS = 50
ONLINE_SECONDS = 120
SCOPE = "agent"


def pk(ctx: TenantContext) -> str:
    return ctx.key(AGENTS)


def new_id() -> str:
    from ulid import ULID

    return f"agt_{str(ULID()).lower()}"


def default_source(agent_id: str) -> str:
    return f"agent:{agent_id}"


def _not_found(agent_id: str) -> NotFound:
    return NotFound(f"agent {agent_id} not found", code="agent_not_found")


def _revoked() -> Unauthorized:
    return Unauthorized("this API key has been revoked")


def to_agent(item: AgentItem) -> Agent:
    seen = item.last_seen_at
    online = bool(
        seen and item.status == "active" and clock.parse(seen) >= clock.now() - timedelta(seconds=ONLINE_SECONDS)
    )
    return Agent(
        id=item.agent_id,
        name=item.name,
        source=item.source,
        status=item.status,  # type: ignore[arg-type]
        online=online,
        version=item.agent_version,
        created_at=item.created_at,
        last_seen_at=seen,
        last_sync_at=item.last_sync_at,
        lag_seconds=None if item.lag_seconds is None else float(item.lag_seconds),
        queued=None if item.queued is None else int(item.queued),
        parked=None if item.parked is None else int(item.parked),
        rejected=int(item.rejected or 0),
        conflicts=int(item.conflicts or 0),
        last_error=item.last_error,
        acked_seq=int(item.acked_seq or 0),
        key_prefix=item.key_prefix,
    )


def load(ctx: TenantContext, agent_id: str) -> AgentItem:
    """1 GetItem (consistent); 404 for an id of another tenant or none."""
    if not AGENT_ID.match(agent_id or ""):
        raise _not_found(agent_id)
    try:
        return AgentItem.get(pk(ctx), agent_id, consistent_read=True)
    except AgentItem.DoesNotExist:
        raise _not_found(agent_id) from None


def _forbidden() -> Forbidden:
    return Forbidden(
        f"this API key lacks the {SCOPE} scope for this agent: only the agent's own key may",
        field="scope",
        code="insufficient_scope",
        required_scope=SCOPE,
    )


def for_agent(ctx: TenantContext, agent_id: str) -> AgentItem:
    """The agent, for its own key only (heartbeat, uploads, fetch): 404 when the tenant has
    no such agent (another tenant's id too), 403 for any other key of the tenant, 401
    when the key is no longer the agent's (revoked or replaced)."""
    item = load(ctx, agent_id)
    if ctx.agent_id != agent_id:
        raise _forbidden()
    if item.status != "active" or item.key_id != ctx.key_id:
        raise _revoked()
    return item


def for_reader(ctx: TenantContext, agent_id: str) -> AgentItem:
    """The agent, for an admin key or its own key (get, parked, conflicts)."""
    if ctx.agent_id is None and ctx.allows("admin"):
        return load(ctx, agent_id)
    return for_agent(ctx, agent_id)


def me(ctx: TenantContext) -> AgentItem:
    """The calling key's own agent (403 for a key that is no agent's)."""
    if ctx.agent_id is None:
        raise _forbidden()
    return for_agent(ctx, ctx.agent_id)


def list_agents(ctx: TenantContext) -> list[Agent]:
    """Oldest first (ids are ULIDs): 1 Query of ``P AGENTS`` (the agents, not the guards)."""
    rows = AgentItem.query(pk(ctx), AgentItem.sk.startswith("agt_"), consistent_read=True)
    return [to_agent(r) for r in rows if isinstance(r, AgentItem)]


def _issued(item: AgentItem, token: str) -> IssuedAgent:
    return IssuedAgent(**to_agent(item).model_dump(), key=token)


def create(ctx: TenantContext, body: AgentCreate) -> IssuedAgent:
    """A new agent and its key (shown once). 1 Query + 1 TransactWriteItems. 409
    ``source_taken`` when another agent has the source; 422 ``agent_limit`` past
    :data:`MAX_AGENTS`."""
    name = body.name.strip()
    existing = [r for r in AgentItem.query(pk(ctx), AgentItem.sk.startswith("agt_"), consistent_read=True)]
    if len(existing) >= MAX_AGENTS:
        raise Invalid(
            f"the tenant has {len(existing)} agents, the most it may have ({MAX_AGENTS}); revoke and reuse one",
            field="name",
            code="agent_limit",
            limit=MAX_AGENTS,
        )
    agent_id = new_id()
    source = body.source or default_source(agent_id)
    if any(r.source == source for r in existing):
        raise _source_taken(source)
    key, token = apikeys.new_agent_key(ctx, agent_id, f"agent {name}"[:100])
    item = AgentItem(
        pk(ctx),
        agent_id,
        agent_id=agent_id,
        name=name,
        source=source,
        status="active",
        key_id=key.sk,
        key_prefix=key.prefix,
        created_at=key.created_at,
        acked_seq=0,
        rejected=0,
        conflicts=0,
    )
    guard = AgentSourceItem(pk(ctx), f"SRC#{source}", agent_id=agent_id)
    tx = Tx()
    apikeys.check_live(tx, ctx)
    tx.save(item, AgentItem.pk.does_not_exist(), role="agent")
    tx.save(guard, AgentSourceItem.pk.does_not_exist(), role="source")
    tx.save(key, ApiKeyItem.pk.does_not_exist(), role="key")
    try:
        tx.run({"caller": _revoked(), "source": _source_taken(source)})
    except Cancelled:
        raise Conflict(
            "the agent could not be created (a concurrent change); retry", code="transaction_conflict"
        ) from None
    return _issued(item, token)


def _source_taken(source: str) -> Conflict:
    return Conflict(f"another agent of the tenant has the source {source}", field="source", code="source_taken")


def get(ctx: TenantContext, agent_id: str) -> Agent:
    return to_agent(for_reader(ctx, agent_id))


def revoke(ctx: TenantContext, agent_id: str) -> Agent:
    """The agent's status becomes ``revoked`` and its key is revoked; its data stays. Again
    on a revoked agent: the same answer, nothing written. 1 GetItem + 1 TransactWriteItems."""
    item = load(ctx, agent_id)
    if item.status == "revoked":
        return to_agent(item)
    now = clock.now_iso()
    tx = Tx()
    tx.update(
        item,
        [AgentItem.status.set("revoked"), AgentItem.revoked_at.set(now)],
        AgentItem.key_id == item.key_id,
        role="agent",
    )
    tx.update_key(
        ApiKeyItem,
        apikeys.pk_of(ctx),
        item.key_id,
        [ApiKeyItem.revoked_at.set(ApiKeyItem.revoked_at | now)],
        ApiKeyItem.pk.exists(),
        role="key",
    )
    try:
        tx.run()
    except Cancelled:
        raise Conflict("the agent changed meanwhile; retry", code="transaction_conflict") from None
    return to_agent(load(ctx, agent_id))


def reissue(ctx: TenantContext, agent_id: str) -> IssuedAgent:
    """A new key (shown once); the old one is revoked; a revoked agent is active again. 1
    GetItem + 1 TransactWriteItems."""
    item = load(ctx, agent_id)
    old = item.key_id
    key, token = apikeys.new_agent_key(ctx, agent_id, f"agent {item.name}"[:100])
    tx = Tx()
    apikeys.check_live(tx, ctx)
    tx.save(key, ApiKeyItem.pk.does_not_exist(), role="key")
    tx.update_key(
        ApiKeyItem,
        apikeys.pk_of(ctx),
        old,
        [ApiKeyItem.revoked_at.set(ApiKeyItem.revoked_at | key.created_at), ApiKeyItem.rotated_to.set(key.sk)],
        ApiKeyItem.pk.exists(),
        role="old",
    )
    tx.update(
        item,
        [
            AgentItem.key_id.set(key.sk),
            AgentItem.key_prefix.set(key.prefix),
            AgentItem.status.set("active"),
            AgentItem.revoked_at.remove(),
        ],
        AgentItem.key_id == old,
        role="agent",
    )
    try:
        tx.run({"caller": _revoked()})
    except Cancelled:
        raise Conflict("the agent was re-keyed or revoked meanwhile; retry", code="transaction_conflict") from None
    item.key_id, item.key_prefix, item.status, item.revoked_at = key.sk, key.prefix, "active", None
    return _issued(item, token)


def heartbeat(ctx: TenantContext, agent_id: str, beat: AgentHeartbeat) -> Agent:
    """Record what the agent says of itself: 1 UpdateItem, conditional on the calling key
    being the agent's current one and the agent active (401 otherwise)."""
    if not AGENT_ID.match(agent_id or ""):
        raise _not_found(agent_id)
    if ctx.agent_id != agent_id:
        load(ctx, agent_id)  # 404 when the tenant has no such agent
        raise _forbidden()
    actions: list[Any] = [
        AgentItem.last_seen_at.set(clock.now_iso()),
        AgentItem.agent_version.set(beat.version),
        AgentItem.queued.set(beat.queued),
        AgentItem.parked.set(beat.parked),
    ]
    lag, synced, error = beat.lag_seconds, beat.last_sync_at, beat.last_error or None
    actions.append(AgentItem.lag_seconds.remove() if lag is None else AgentItem.lag_seconds.set(lag))
    actions.append(AgentItem.last_sync_at.remove() if synced is None else AgentItem.last_sync_at.set(clock.iso(synced)))
    actions.append(AgentItem.last_error.remove() if error is None else AgentItem.last_error.set(error))
    try:
        data = AgentItem._get_connection().update_item(
            pk(ctx),
            range_key=agent_id,
            actions=actions,
            condition=AgentItem.pk.exists() & (AgentItem.status == "active") & (AgentItem.key_id == ctx.key_id),
            return_values="ALL_NEW",
        )
    except Exception as exc:
        if condition_failed(exc):
            load(ctx, agent_id)  # 404 if it is gone
            raise _revoked() from None
        raise
    item = AgentItem.from_raw_data(data["Attributes"])
    return to_agent(item)


def advance(ctx: TenantContext, agent_id: str, seq: int, rejected: int, conflicts: int) -> int:
    """After an upload: ``acked_seq`` moves to ``seq`` if that is further (never back),
    and the counts grow. 1 UpdateItem; a second one (the counts only) when it was already
    further. Returns the acked seq now."""
    adds = []
    if rejected:
        adds.append(AgentItem.rejected.add(rejected))
    if conflicts:
        adds.append(AgentItem.conflicts.add(conflicts))
    conn = AgentItem._get_connection()
    try:
        data = conn.update_item(
            pk(ctx),
            range_key=agent_id,
            actions=[AgentItem.acked_seq.set(seq), *adds],
            condition=AgentItem.pk.exists() & (AgentItem.acked_seq.does_not_exist() | (AgentItem.acked_seq < seq)),
            return_values="ALL_NEW",
        )
    except Exception as exc:
        if not condition_failed(exc):
            raise
        if adds:
            data = conn.update_item(pk(ctx), range_key=agent_id, actions=adds, return_values="ALL_NEW")
        else:
            return int(load(ctx, agent_id).acked_seq or 0)
    return int(AgentItem.from_raw_data(data["Attributes"]).acked_seq or 0)
