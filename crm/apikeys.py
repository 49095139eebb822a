"""API keys: shown once, stored as a SHA-256 hash, scoped, revocable and rotatable.

A key reads ``rpk_<tenant>_<key id>_<secret>``: it carries its tenant, so
authentication is one BatchGetItem (the key and its tenant) with no index, and the
visible prefix ``rpk_<tenant>_<key id>`` tells keys apart without revealing them.

Lookups are cached per Lambda container for ``RAPPORT_KEY_CACHE_SECONDS`` (at most
60 s): a revoked key or a suspended tenant is refused within that time, except on admin
routes, which read the key afresh (``fresh=True``): a revoked admin key must not mint,
rotate or revoke keys. A key records the key that created it (``created_by``), and its
creation is conditional on that key still being live.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from crm import clock, ids, settings
from crm.context import SCOPES, PlanState, TenantContext
from crm.errors import Forbidden, Invalid, NotFound, Unauthorized
from crm.storage import ApiKeyItem, BillingItem, Item, TenantItem, condition_failed
from crm.tx import Cancelled, Tx


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    last4: str
    scopes: list[str]
    created_at: str
    revoked_at: str | None
    rotated_to: str | None
    created_by: str | None = None
    agent_id: str | None = None  # an on-premise agent's key (scopes ["agent"]; crm/agents)


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str  # the whole bearer token, shown once


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _pk(ctx: TenantContext) -> str:
    return ctx.key("APIKEYS")


def pk_of(ctx: TenantContext) -> str:
    """The partition of the tenant's keys (crm/agents writes its keys in its transactions)."""
    return _pk(ctx)


def _to_key(item: ApiKeyItem) -> ApiKey:
    return ApiKey(
        item.sk,
        item.name,
        item.prefix,
        item.last4,
        list(cast(list[str], item.scopes)),
        item.created_at,
        item.revoked_at,
        item.rotated_to,
        item.created_by,
        item.agent_id,
    )


AGENT_SCOPE = "agent"  # only an agent's own key has it, made through crm/agents


def _check_scopes(scopes: list[str]) -> list[str]:
    allowed = [s for s in SCOPES if s != AGENT_SCOPE]
    bad = [s for s in scopes if s not in allowed]
    if bad or not scopes:
        if AGENT_SCOPE in bad:
            raise Invalid("agent keys are made by POST /v1/agents, not as API keys", field="scopes")
        raise Invalid(f"scopes must be a non-empty subset of {allowed}", field="scopes")
    return sorted(set(scopes))


def new_agent_key(ctx: TenantContext, agent_id: str, name: str) -> tuple[ApiKeyItem, str]:
    """An agent's key item (scopes ``["agent"]``, naming the agent) and its token, not yet
    saved: crm/agents writes it in the transaction that creates or re-keys the agent."""
    item, token = _new_item(ctx, name, [AGENT_SCOPE])
    item.agent_id = agent_id
    return item, token


def check_live(tx: Tx, ctx: TenantContext) -> None:
    """In a transaction: the calling key is still live (role ``caller``); nothing for the operator."""
    if ctx.key_id is not None:
        _check_live(tx, ctx)


def _new_item(ctx: TenantContext, name: str, scopes: list[str]) -> tuple[ApiKeyItem, str]:
    kid = ids.key_id()
    prefix = f"rpk_{ctx.tenant_id}_{kid}"
    token = f"{prefix}_{ids.key_secret()}"
    item = ApiKeyItem(
        _pk(ctx),
        kid,
        name=name,
        prefix=prefix,
        secret_hash=_hash(token),
        scopes=scopes,
        created_at=clock.now_iso(),
        last4=token[-4:],
        created_by=ctx.key_id,
    )
    return item, token


def create(ctx: TenantContext, name: str, scopes: list[str]) -> IssuedKey:
    """A new key, created by ``ctx.key_id`` (None: the operator). With a creating key,
    one TransactWriteItems checks that key is still live, so a key revoked a moment
    ago cannot mint one that outlives it."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise Invalid("name must be 1-100 characters", field="name")
    item, token = _new_item(ctx, name, _check_scopes(scopes))
    if ctx.key_id is None:
        item.save(condition=ApiKeyItem.pk.does_not_exist())
        return IssuedKey(_to_key(item), token)
    tx = Tx()
    _check_live(tx, ctx)
    tx.save(item, ApiKeyItem.pk.does_not_exist(), role="key")
    try:
        tx.run()
    except Cancelled:  # whatever part: the caller is told its key no longer works
        raise Unauthorized("this API key has been revoked") from None
    return IssuedKey(_to_key(item), token)


def _check_live(tx: Tx, ctx: TenantContext) -> None:
    """In a transaction: the key making the change exists and is not revoked (role ``caller``)."""
    tx.check(
        ApiKeyItem, _pk(ctx), ctx.key_id, ApiKeyItem.pk.exists() & ApiKeyItem.revoked_at.does_not_exist(), role="caller"
    )


def _get_item(ctx: TenantContext, key_id: str) -> ApiKeyItem:
    if not ids.KEY_ID.match(key_id):
        raise NotFound(f"api key {key_id} not found")
    try:
        return ApiKeyItem.get(_pk(ctx), key_id, consistent_read=True)
    except ApiKeyItem.DoesNotExist:
        raise NotFound(f"api key {key_id} not found") from None


def list_keys(ctx: TenantContext) -> list[ApiKey]:
    """All keys of the tenant, newest last: one Query (a tenant has few keys)."""
    return sorted((_to_key(i) for i in ApiKeyItem.query(_pk(ctx))), key=lambda k: k.created_at)


def revoke(ctx: TenantContext, key_id: str) -> ApiKey:
    from pynamodb.exceptions import UpdateError

    item = _get_item(ctx, key_id)
    if item.revoked_at is None:
        try:
            item.update(
                actions=[ApiKeyItem.revoked_at.set(clock.now_iso())], condition=ApiKeyItem.revoked_at.does_not_exist()
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            item = _get_item(ctx, key_id)  # revoked concurrently: same outcome
    return _to_key(item)


def rotate(ctx: TenantContext, key_id: str) -> IssuedKey:
    """Issue a replacement with the same name and scopes and revoke the old key, atomically."""
    old = _get_item(ctx, key_id)
    if old.revoked_at is not None:
        raise Invalid(f"api key {key_id} is revoked and cannot be rotated", field="key_id")
    if old.agent_id is not None:  # its agent names its key: re-key it there
        raise Invalid(
            f"api key {key_id} is agent {old.agent_id}'s: issue a new one with POST /v1/agents/{old.agent_id}/key",
            field="key_id",
        )
    new, token = _new_item(ctx, old.name, list(old.scopes))
    by_other = ctx.key_id is not None and ctx.key_id != key_id
    tx = Tx()
    if by_other:
        _check_live(tx, ctx)
    tx.save(new, ApiKeyItem.pk.does_not_exist(), role="new")
    tx.update(
        old,
        [ApiKeyItem.revoked_at.set(new.created_at), ApiKeyItem.rotated_to.set(new.sk)],
        ApiKeyItem.revoked_at.does_not_exist(),
        role="old",
    )
    try:
        tx.run({"caller": Unauthorized("this API key has been revoked")})
    except Cancelled:
        raise Invalid(f"api key {key_id} was revoked or rotated concurrently", field="key_id") from None
    return IssuedKey(_to_key(new), token)


# --- authentication -------------------------------------------------------

_cache: dict[str, tuple[float, TenantContext | Exception]] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def authenticate(
    token: str | None, *, fresh: bool = False, monotonic: Callable[[], float] = time.monotonic
) -> TenantContext:
    """Resolve a bearer token to its tenant context, or raise Unauthorized/Forbidden.
    ``fresh``: skip the cache (admin routes see a revocation at once); the fresh
    answer still replaces the cached one."""
    if not token:
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    digest = _hash(token)
    ttl = settings.key_cache_seconds()
    now = monotonic()
    with _cache_lock:
        hit = _cache.get(digest)
    if hit and hit[0] > now and not fresh:
        result = hit[1]
    else:
        result = _resolve(token, digest)
        if ttl > 0:
            with _cache_lock:
                if len(_cache) > 10_000:
                    _cache.clear()
                _cache[digest] = (now + ttl, result)
    if isinstance(result, Exception):
        raise result
    return result


def _resolve(token: str, digest: str) -> TenantContext | Exception:
    parts = token.split("_")
    if len(parts) != 4 or parts[0] != "rpk" or not ids.TENANT_ID.match(parts[1]) or not ids.KEY_ID.match(parts[2]):
        return Unauthorized("unknown API key")
    tenant_id, kid = parts[1], parts[2]
    ctx = TenantContext(tenant_id)
    wanted = [(_pk(ctx), kid), (ctx.prefix, "TENANT"), (ctx.prefix, "BILLING")]
    found = {i.sk: i for i in Item.batch_get(wanted, consistent_read=True)}
    key, tenant, billing = found.get(kid), found.get("TENANT"), found.get("BILLING")
    if (
        not isinstance(key, ApiKeyItem)
        or not isinstance(tenant, TenantItem)
        or not hmac.compare_digest(key.secret_hash, digest)
    ):
        return Unauthorized("unknown API key")
    if key.revoked_at is not None:
        return Unauthorized("this API key has been revoked")
    if tenant.status != "active":
        return Forbidden(f"tenant {tenant_id} is {tenant.status}", code="tenant_suspended")
    plan = (
        PlanState(billing.plan, billing.status, billing.grace_until)
        if isinstance(billing, BillingItem)
        else PlanState()
    )
    return TenantContext(tenant_id, kid, frozenset(key.scopes), plan, key.agent_id)
