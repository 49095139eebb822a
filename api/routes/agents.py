"""/v1/agents: the tenant's on-premise agents (crm/agents; the protocol in docs/api.md
"Agents"). An admin creates, lists, revokes and re-keys them; each agent's own key sends
its heartbeat, uploads and fetches, and reads its parked records and conflicts (an admin
reads those too). Any other key of the tenant gets 403 ``insufficient_scope``; an id of
another tenant 404. A key appears only in the answers to a create and a re-key (no
Idempotency-Key: the stored answer would hold it)."""

from __future__ import annotations

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "agents"
ADMIN, AGENT = "admin", "agent"
_LIST = "/v1/agents"
_ID = "/v1/agents/{agent_id}"


@endpoint(
    bp,
    _LIST,
    "POST",
    operation_id="createAgent",
    tag=TAG,
    scope=ADMIN,
    summary="Register an on-premise agent: 201 with its key, shown this once. source (default agent:<agent id>) "
    "names its records' external ids; 409 source_taken when another agent has it; 422 agent_limit past 50",
    body="AgentCreate",
    responses={201: "IssuedAgent"},
    errors=(409,),
)
def create_agent(req: Request) -> Result:
    from crm.agents import registry

    created = registry.create(req.ctx, req.body)
    return Result(201, created, {"Location": f"{_LIST}/{created.id}"})


@endpoint(
    bp,
    _LIST,
    "GET",
    operation_id="listAgents",
    tag=TAG,
    scope=ADMIN,
    summary="The tenant's agents and their status (online, version, last sync, lag, queued, last error); "
    "never their keys. 1 Query",
    responses={200: "AgentList"},
)
def list_agents(req: Request) -> Result:
    from crm.agents import registry

    return Result(200, {"data": registry.list_agents(req.ctx)})


@endpoint(
    bp,
    f"{_LIST}/me",
    "GET",
    operation_id="getOwnAgent",
    tag=TAG,
    scope=AGENT,
    summary="The calling agent key's own agent (403 for any other key)",
    responses={200: "Agent"},
)
def get_me(req: Request) -> Result:
    from crm.agents import registry

    return Result(200, registry.to_agent(registry.me(req.ctx)))


@endpoint(
    bp,
    _ID,
    "GET",
    operation_id="getAgent",
    tag=TAG,
    scope=AGENT,
    summary="An agent and its status (an admin key, or the agent's own)",
    responses={200: "Agent"},
    errors=(404,),
)
def get_agent(req: Request) -> Result:
    from crm.agents import registry

    return Result(200, registry.get(req.ctx, req.params["agent_id"]))


@endpoint(
    bp,
    _ID,
    "DELETE",
    operation_id="revokeAgent",
    tag=TAG,
    scope=ADMIN,
    summary="Revoke an agent: its key stops working at once on its routes; its data and records are kept. "
    "POST …/key makes it active again",
    responses={200: "Agent"},
    errors=(404, 409),
)
def revoke_agent(req: Request) -> Result:
    from crm.agents import registry

    return Result(200, registry.revoke(req.ctx, req.params["agent_id"]))


@endpoint(
    bp,
    f"{_ID}/key",
    "POST",
    operation_id="reissueAgentKey",
    tag=TAG,
    scope=ADMIN,
    summary="A new key for the agent, shown this once; the old one is revoked; a revoked agent is active again",
    responses={201: "IssuedAgent"},
    errors=(404, 409),
)
def reissue_key(req: Request) -> Result:
    from crm.agents import registry

    return Result(201, registry.reissue(req.ctx, req.params["agent_id"]))


@endpoint(
    bp,
    f"{_ID}/heartbeat",
    "POST",
    operation_id="agentHeartbeat",
    tag=TAG,
    scope=AGENT,
    summary="The agent's own key reports its version, queue, lag, last sync and last error (1 UpdateItem); "
    "the answer carries the server's HLC",
    body="AgentHeartbeat",
    responses={200: "AgentHeartbeatResult"},
    errors=(404,),
)
def heartbeat(req: Request) -> Result:
    from crm.agents import hlc, registry

    agent = registry.heartbeat(req.ctx, req.params["agent_id"], req.body)
    return Result(200, {"agent": agent, "hlc": hlc.now()})


@endpoint(
    bp,
    f"{_ID}/uploads",
    "POST",
    operation_id="agentUpload",
    tag=TAG,
    scope=AGENT,
    summary="Up to 100 outbox records (customers, orders), each with its seq: applied by the conflict rules, a bad "
    "one rejected and parked while the rest apply, a seq already acknowledged answered as duplicate (nothing "
    "written); acked_seq moves to the batch's highest seq",
    body="AgentUpload",
    responses={200: "AgentUploadResponse"},
    errors=(404,),
    max_body=1024 * 1024,
)
def upload(req: Request) -> Result:
    import json

    from connectors import agent_uploads

    raw = json.loads(req.raw)["records"]  # the records as sent: validated one by one
    return Result(200, agent_uploads.upload(req.ctx, req.params["agent_id"], raw))


@endpoint(
    bp,
    f"{_ID}/fetch",
    "POST",
    operation_id="agentFetch",
    tag=TAG,
    scope=AGENT,
    summary="Customers by id (1-100) as the cloud holds them, with the agent source's external id; unknown ids are "
    "absent. 1 BatchGetItem",
    body="AgentFetch",
    responses={200: "AgentFetchResult"},
    errors=(404,),
)
def fetch(req: Request) -> Result:
    from crm.agents import fetch as fetching
    from crm.agents import hlc, registry

    agent = registry.for_agent(req.ctx, req.params["agent_id"])
    return Result(200, {"data": fetching.fetch(req.ctx, agent.source, req.body.customer_ids), "hlc": hlc.now()})


@endpoint(
    bp,
    f"{_ID}/parked",
    "GET",
    operation_id="listAgentParked",
    tag=TAG,
    scope=AGENT,
    summary="The records the server refused, newest first, with the reason (kept 30 days; an admin key or the "
    "agent's own)",
    query="PageQuery",
    responses={200: "AgentParkedPage"},
    errors=(404,),
)
def list_parked(req: Request) -> Result:
    from crm.agents import parked, registry

    agent_id = req.params["agent_id"]
    registry.for_reader(req.ctx, agent_id)
    page = parked.list_parked(req.ctx, agent_id, req.query.cursor, req.query.limit)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    f"{_ID}/conflicts",
    "GET",
    operation_id="listAgentConflicts",
    tag=TAG,
    scope=AGENT,
    summary="The conflicts a field's rule resolved, newest first: both values, the winner, the rule, both HLCs "
    "(kept 90 days; an admin key or the agent's own)",
    query="PageQuery",
    responses={200: "AgentConflictPage"},
    errors=(404,),
)
def list_conflicts(req: Request) -> Result:
    from crm.agents import conflicts, registry

    agent_id = req.params["agent_id"]
    registry.for_reader(req.ctx, agent_id)
    page = conflicts.list_conflicts(req.ctx, agent_id, req.query.cursor, req.query.limit)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})
