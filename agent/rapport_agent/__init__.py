"""rapport-agent: the on-premise side of Rapport's hybrid sync (docs/agent.md).

It dials out only (HTTPS to the API), keeps a durable SQLite outbox of local changes,
uploads them in batches that are idempotent by (agent, seq), and writes Rapport's
changes (read from the change feed) to the local database by per-field rules.
"""

__version__ = "0.1.0"
