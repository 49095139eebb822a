"""On-premise agents (issue 16; the protocol in docs/api.md "Agents"): a tenant's
``rapport-agent`` dials out with its own key, uploads local changes in batches and reads
Rapport's down through the change feed.

- ``registry``: the agents, their keys (crm/apikeys.py) and heartbeats;
- ``hlc``: the hybrid logical clock both sides compare;
- ``rules``: the per-field conflict decision (pure, no I/O);
- ``records``: an uploaded record's validation, record by record;
- ``customers``: applying a batch's customer records (identity resolution, the rules);
- ``parked`` / ``conflicts``: what the server refused, and what a rule resolved;
- ``fetch``: profiles by id for the agent (one BatchGetItem).

Orders go through ``connectors.sink`` (crm never imports connectors): the upload as a whole
is run by connectors/agent_uploads.py.
"""
