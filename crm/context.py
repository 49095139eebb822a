"""The tenant context every storage call takes: the only way to build a tenant key."""

from __future__ import annotations

from dataclasses import dataclass, field

from crm.ids import TENANT_ID

SCOPES = (
    "customers:read",
    "customers:write",
    "orders:read",
    "orders:write",
    "segments:read",
    "segments:write",
    "email:read",
    "email:write",
    "changes:read",
    "webhooks:read",
    "webhooks:write",
    "agent",
    "admin",
)
# A scope grants itself and what it implies: admin can do anything, write implies read.
_IMPLIED = {
    "admin": set(SCOPES),
    "customers:write": {"customers:write", "customers:read"},
    "customers:read": {"customers:read"},
    "orders:write": {"orders:write", "orders:read"},
    "orders:read": {"orders:read"},
    "segments:write": {"segments:write", "segments:read"},
    "segments:read": {"segments:read"},
    "email:write": {"email:write", "email:read"},
    "email:read": {"email:read"},
    "changes:read": {"changes:read"},
    # webhooks:write chooses where the tenant's events (customer data) are sent: grant it
    # as deliberately as customers:read (docs/webhooks.md)
    "webhooks:write": {"webhooks:write", "webhooks:read"},
    "webhooks:read": {"webhooks:read"},
    # an on-premise agent's key (crm/agents): its own agent's routes, and the change feed it
    # reads down; made only through /v1/agents, never /v1/api-keys
    "agent": {"agent", "changes:read"},
}


@dataclass(frozen=True)
class PlanState:
    """The tenant's plan as the request sees it (read with the API key, cached with it)."""

    plan: str = "free"
    status: str = "free"  # the Stripe subscription's status, or free
    grace_until: str | None = None  # past_due: writes are refused (402) from this instant


@dataclass(frozen=True)
class TenantContext:
    tenant_id: str
    key_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    billing: PlanState = field(default_factory=PlanState)
    agent_id: str | None = None  # the agent an agent key belongs to (crm/agents); None otherwise

    def __post_init__(self) -> None:
        if not TENANT_ID.match(self.tenant_id):
            raise ValueError(f"not a tenant id: {self.tenant_id!r}")

    @property
    def prefix(self) -> str:
        """``T#<tenant>#``: delimiter-terminated so tenant t1 never prefixes t12."""
        return f"T#{self.tenant_id}#"

    def key(self, *parts: str) -> str:
        return self.prefix + "#".join(parts)

    def allows(self, scope: str) -> bool:
        return any(scope in _IMPLIED.get(s, ()) for s in self.scopes)
