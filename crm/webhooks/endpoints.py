"""Webhook endpoints: where a tenant's events go, which ones, and the secrets that sign them.

Storage: ``T#<tenant>#WEBHOOKS`` / ``<endpoint id>`` (``WebhookEndpointItem``), at most
:data:`MAX_ENDPOINTS` per tenant, so the delivery engine's :func:`list_enabled` is one
consistent Query of one small partition.

Secrets are ``whsec_`` + base64 of 24 random bytes, returned once (create, rotate) and
stored sealed with KMS (crm/sealing.py; the encryption context names the tenant and the
endpoint, so a blob copied to another endpoint does not open). A rotation keeps the old
secret signing beside the new one for ``overlap_seconds``: every delivery then carries
both signatures (crm/webhooks/signing.py), so a receiver switches secrets without a gap.

The delivery engine's calls (keep their names and signatures): :func:`get`,
:func:`list_enabled`, :func:`signing_secrets`, :func:`matches`, :func:`disable`,
:func:`mark_failing` and :func:`mark_healthy`; the last three are one conditional
UpdateItem each that never overwrites a newer state.

DynamoDB requests (docs/performance.md):
- create: 1 Query (COUNT, the limit) + 1 PutItem + 1 KMS Encrypt
- get: 1 GetItem; list: 1 Query; list_enabled: 1 Query (consistent, enabled only)
- update: 1 GetItem + 1 PutItem conditional on the version read
- delete: 1 GetItem + 1 DeleteItem conditional on the version read
- rotate: 1 GetItem + 1 KMS Decrypt + 1 KMS Encrypt + 1 PutItem conditional on the version
- signing_secrets: 1 KMS Decrypt (cached per sealed blob; 1 GetItem first when the
  endpoint was not read by this module)
- disable / mark_failing / mark_healthy: 1 UpdateItem each
"""

from __future__ import annotations

import base64
import re
import secrets as _random
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from crm import clock, retry
from crm.context import TenantContext
from crm.errors import Conflict, Invalid, NotFound, PreconditionFailed, stale_version
from crm.paging import Page, by_sort_key
from crm.storage import WebhookEndpointItem, condition_failed
from crm.webhooks.schemas import (
    ENDPOINT_ID_PATTERN,
    WILDCARD,
    Endpoint,
    WebhookEndpointCreate,
    WebhookEndpointPatch,
    WebhookEndpointWithSecret,
)

WEBHOOKS = "WEBHOOKS"
ENDPOINT_ID = re.compile(ENDPOINT_ID_PATTERN)
MAX_ENDPOINTS = 20  # per tenant: every event is matched against each enabled one
MAX_PREVIOUS = 5  # rotated-out secrets still overlapping, at most (a burst of rotations)
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
REASONS = ("manual", "gone_410", "failing_5_days")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def pk(ctx: TenantContext) -> str:
    return ctx.key(WEBHOOKS)


def new_id() -> str:
    from ulid import ULID

    return f"whe_{ULID()}"


def new_secret() -> str:
    """``whsec_`` + base64 of 24 random bytes (the Standard Webhooks secret format)."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(SECRET_BYTES)).decode()


def _not_found(endpoint_id: str) -> NotFound:
    return NotFound(f"webhook endpoint {endpoint_id} not found", code="webhook_endpoint_not_found")


# --- URLs ---------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """The URL as stored, or Invalid (422, ``field: url``): https to a host that is not a
    literal address of our own network (in any spelling) nor ``localhost``; plain http
    only to a loopback host in local development. Names are checked again on every send,
    after DNS (connectors/outbound.py)."""
    from common import net

    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise Invalid("url must be an absolute URL such as https://hooks.example.com/rapport", field="url") from None
    if parts.scheme not in ("https", "http") or not host:
        raise Invalid("url must be an absolute URL such as https://hooks.example.com/rapport", field="url")
    if parts.username is not None or parts.password is not None:
        raise Invalid("url must not carry credentials (user:password@): they would be stored in clear", field="url")
    loopback = host in _LOOPBACK_NAMES or (net.literal(host) or "").startswith("127.")
    if parts.scheme == "http" and not (net.local_dev() and loopback):
        raise Invalid("url must use https (plain http only to a loopback host in local development)", field="url")
    try:
        net.check_host(host)
    except net.BlockedAddress as exc:
        raise Invalid(f"url's host {exc}: a webhook endpoint must be a public address", field="url") from None
    return url


# --- reading ------------------------------------------------------------------------------


def _status(item: WebhookEndpointItem) -> str:
    return "enabled" if item.enabled else "disabled"


def to_endpoint(item: WebhookEndpointItem) -> Endpoint:
    endpoint = Endpoint(
        id=item.endpoint_id,
        url=item.url,
        types=[str(t) for t in item.types or []],
        description=item.description,
        enabled=bool(item.enabled),
        ordered=bool(item.ordered),
        status=_status(item),  # type: ignore[arg-type]
        disabled_reason=None if item.enabled else (item.disabled_reason or "manual"),  # type: ignore[arg-type]
        failing_since=item.failing_since,
        secret_overlap_until=_overlap_until(item),
        created_at=item.created_at,
        updated_at=item.updated_at,
        version=int(item.version or 0),
    )
    endpoint._sealed = dict(item.sealed or {})
    return endpoint


def _overlap_until(item: WebhookEndpointItem) -> str | None:
    until = item.overlap_until
    return until if until and until > clock.now_iso() else None


def load(ctx: TenantContext, endpoint_id: str) -> WebhookEndpointItem:
    """1 GetItem (consistent); 404 for an id of another tenant or none."""
    if not ENDPOINT_ID.match(endpoint_id or ""):
        raise _not_found(endpoint_id)
    try:
        return WebhookEndpointItem.get(pk(ctx), endpoint_id, consistent_read=True)
    except WebhookEndpointItem.DoesNotExist:
        raise _not_found(endpoint_id) from None


def get(ctx: TenantContext, endpoint_id: str) -> Endpoint:
    """1 GetItem."""
    return to_endpoint(load(ctx, endpoint_id))


def list_(ctx: TenantContext, cursor: str | None, limit: int) -> Page:
    """1 Query of ``P WEBHOOKS`` (by id: oldest first)."""
    rows, nxt = by_sort_key(WebhookEndpointItem, pk(ctx), "webhook_endpoints", ENDPOINT_ID, cursor, limit)
    return Page([to_endpoint(r) for r in rows], nxt)


def list_enabled(ctx: TenantContext) -> list[Endpoint]:
    """The enabled endpoints, oldest first: 1 consistent Query of ``P WEBHOOKS`` (at most
    :data:`MAX_ENDPOINTS` small items, one page), filtered on ``enabled``."""
    rows = WebhookEndpointItem.query(
        pk(ctx), filter_condition=WebhookEndpointItem.enabled == True, consistent_read=True
    )
    return [to_endpoint(r) for r in rows]


def matches(endpoint: Endpoint, event_type: str) -> bool:
    """Whether the endpoint wants ``event_type``: ``*``, the exact type, or its family
    (``order.*`` matches ``order.paid``, not ``orders.x``)."""
    for pattern in endpoint.types:
        if pattern == WILDCARD or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


# --- secrets ------------------------------------------------------------------------------


def _context(ctx: TenantContext, endpoint_id: str) -> dict[str, str]:
    return {"tenant": ctx.tenant_id, "webhook_endpoint": endpoint_id}


def _seal(ctx: TenantContext, endpoint_id: str, current: str, previous: list[dict[str, str]]) -> dict[str, str]:
    from crm import sealing

    return sealing.seal(_context(ctx, endpoint_id), {"current": current, "previous": previous})


_OPENED: dict[tuple[str, str, str], dict[str, Any]] = {}
_OPENED_MAX = 256


def _unseal(ctx: TenantContext, endpoint_id: str, sealed: dict[str, str]) -> dict[str, Any]:
    """1 KMS Decrypt, cached per blob (a blob is immutable: a rotation seals a new one),
    so a burst of deliveries to one endpoint does not call KMS for each."""
    from crm import sealing

    key = (ctx.tenant_id, endpoint_id, sealed.get("blob", ""))
    hit = _OPENED.get(key)
    if hit is None:
        hit = sealing.unseal(_context(ctx, endpoint_id), sealed)
        if len(_OPENED) >= _OPENED_MAX:
            _OPENED.clear()
        _OPENED[key] = hit
    return hit


def _live_previous(previous: Iterable[dict[str, str]], now: str) -> list[dict[str, str]]:
    return [p for p in previous if p.get("expires_at", "") > now]


def signing_secrets(ctx: TenantContext, endpoint: Endpoint) -> list[str]:
    """The secrets that sign a delivery now: the current one first, then the rotated-out
    ones whose overlap has not ended. 1 KMS Decrypt (cached); 1 GetItem first when
    ``endpoint`` was not read through this module."""
    sealed = endpoint._sealed or dict(load(ctx, endpoint.id).sealed or {})
    opened = _unseal(ctx, endpoint.id, sealed)
    now = clock.now_iso()
    return [opened["current"], *(p["secret"] for p in _live_previous(opened.get("previous") or [], now))]


# --- writes -------------------------------------------------------------------------------


def _stale(if_match: int | None, item: WebhookEndpointItem) -> None:
    if if_match is not None and if_match != int(item.version or 0):
        raise stale_version(if_match, int(item.version or 0))


def _dedupe(types: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(types))


def _with_secret(item: WebhookEndpointItem, secret: str) -> WebhookEndpointWithSecret:
    out = WebhookEndpointWithSecret(**to_endpoint(item).model_dump(), secret=secret)
    out._sealed = dict(item.sealed or {})
    return out


def create(ctx: TenantContext, body: WebhookEndpointCreate) -> WebhookEndpointWithSecret:
    """1 Query (COUNT) + 1 KMS Encrypt + 1 PutItem. 409 ``webhook_endpoint_limit`` past
    :data:`MAX_ENDPOINTS`; 422 naming ``url`` for a URL the rules refuse."""
    url = check_url(body.url)
    count = WebhookEndpointItem.count(pk(ctx), consistent_read=True)
    if count >= MAX_ENDPOINTS:
        raise Conflict(
            f"the tenant has {count} webhook endpoints, the most it may have ({MAX_ENDPOINTS}); delete one first",
            field="url",
            code="webhook_endpoint_limit",
            limit=MAX_ENDPOINTS,
        )
    endpoint_id, now, secret = new_id(), clock.now_iso(), new_secret()
    item = WebhookEndpointItem(
        pk(ctx),
        endpoint_id,
        endpoint_id=endpoint_id,
        url=url,
        types=_dedupe(body.types),
        description=body.description or None,
        enabled=body.enabled,
        ordered=body.ordered,
        disabled_reason=None if body.enabled else "manual",
        sealed=_seal(ctx, endpoint_id, secret, []),
        created_at=now,
        updated_at=now,
    )
    item.save(WebhookEndpointItem.pk.does_not_exist())
    return _with_secret(item, secret)


def _save(item: WebhookEndpointItem) -> None:
    """PutItem conditional on the version read (PynamoDB's version check)."""
    _versioned(item.save)


def _versioned(write: Any) -> None:
    """A write conditional on the version read: a lost race is a 412 to read again."""
    try:
        write()
    except Exception as exc:
        if condition_failed(exc):
            raise PreconditionFailed(
                "the webhook endpoint changed meanwhile; read it again", code="stale_version"
            ) from None
        raise


def update(ctx: TenantContext, endpoint_id: str, patch: WebhookEndpointPatch, if_match: int | None) -> Endpoint:
    """1 GetItem + 1 PutItem conditional on the version read (without If-Match a lost
    race with the delivery engine's bookkeeping is re-read and applied again)."""
    given = patch.model_fields_set
    url = check_url(patch.url) if patch.url is not None else None
    for _ in retry.backoff():
        item = load(ctx, endpoint_id)
        _stale(if_match, item)
        if url is not None:
            item.url = url
        if patch.types is not None:
            item.types = cast(Any, _dedupe(patch.types))
        if "description" in given:
            item.description = patch.description or None
        if patch.ordered is not None:
            item.ordered = patch.ordered
        if patch.enabled is True and not item.enabled:
            item.enabled, item.disabled_reason, item.failing_since = True, None, None
        elif patch.enabled is False and item.enabled:
            item.enabled, item.disabled_reason = False, "manual"
        item.updated_at = clock.now_iso()
        try:
            _save(item)
        except PreconditionFailed:
            if if_match is not None:
                raise
            continue
        return to_endpoint(item)
    raise _kept_changing()


def _kept_changing() -> Conflict:
    return Conflict("the webhook endpoint kept changing; retry", code="transaction_conflict")


def delete(ctx: TenantContext, endpoint_id: str, if_match: int | None) -> None:
    """1 GetItem + 1 DeleteItem conditional on the version read. Deliveries already
    scheduled for it find no endpoint and are dropped by the delivery engine."""
    item = load(ctx, endpoint_id)
    _stale(if_match, item)
    _versioned(item.delete)


def rotate_secret(ctx: TenantContext, endpoint_id: str, overlap_seconds: int) -> WebhookEndpointWithSecret:
    """A new secret, returned once; the current one keeps signing beside it for
    ``overlap_seconds`` (0: it stops at once). 1 GetItem + 1 KMS Decrypt + 1 KMS Encrypt
    + 1 PutItem conditional on the version read (re-read and redone if it lost a race)."""
    for _ in retry.backoff():
        item = load(ctx, endpoint_id)
        opened = _unseal(ctx, endpoint_id, dict(item.sealed or {}))
        now = clock.now()
        now_iso = clock.iso(now)
        previous = _live_previous(opened.get("previous") or [], now_iso)
        if overlap_seconds > 0:
            expires = clock.iso(now + timedelta(seconds=overlap_seconds))
            previous = [{"secret": opened["current"], "expires_at": expires}, *previous]
        previous = previous[:MAX_PREVIOUS]
        secret = new_secret()
        item.sealed = _seal(ctx, endpoint_id, secret, previous)
        item.overlap_until = max((p["expires_at"] for p in previous), default=None)
        item.updated_at = now_iso
        try:
            _save(item)
        except PreconditionFailed:
            continue  # the engine's bookkeeping, or another rotation: rotate what is there now
        return _with_secret(item, secret)
    raise _kept_changing()


# --- the delivery engine's bookkeeping: one conditional UpdateItem each --------------------


def _update(ctx: TenantContext, endpoint_id: str, actions: list[Any], condition: Any) -> bool:
    """One UpdateItem that bumps ``version`` (the ETag follows the state); False when the
    condition did not hold (the endpoint is gone or already in a newer state)."""
    actions = [*actions, WebhookEndpointItem.version.add(1), WebhookEndpointItem.updated_at.set(clock.now_iso())]
    try:
        WebhookEndpointItem._get_connection().update_item(
            pk(ctx), range_key=endpoint_id, actions=actions, condition=WebhookEndpointItem.pk.exists() & condition
        )
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def disable(ctx: TenantContext, endpoint_id: str, reason: str) -> bool:
    """Stop sending to it (``reason``: manual, gone_410, failing_5_days). 1 UpdateItem,
    only while enabled (a disabled endpoint keeps its first reason); True if it did."""
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {REASONS}, not {reason!r}")
    return _update(
        ctx,
        endpoint_id,
        [WebhookEndpointItem.enabled.set(False), WebhookEndpointItem.disabled_reason.set(reason)],
        WebhookEndpointItem.enabled == True,
    )


def mark_failing(ctx: TenantContext, endpoint_id: str, since_iso: str) -> bool:
    """Record the start of a failing streak (the first failed attempt's time). 1
    UpdateItem, only while enabled, only if no streak is recorded yet (or a later start
    was), and never for a failure older than the last :func:`mark_healthy`."""
    item = WebhookEndpointItem
    return _update(
        ctx,
        endpoint_id,
        [item.failing_since.set(since_iso)],
        (item.enabled == True)
        & (item.failing_since.does_not_exist() | (item.failing_since > since_iso))
        & (item.healthy_at.does_not_exist() | (item.healthy_at < since_iso)),
    )


def mark_healthy(ctx: TenantContext, endpoint_id: str) -> bool:
    """A delivery succeeded: end the failing streak. 1 UpdateItem, only when a streak
    is recorded (call it when ``endpoint.failing_since`` is set; otherwise it writes
    nothing); stamps ``healthy_at`` so a stale :func:`mark_failing` cannot start it again."""
    item = WebhookEndpointItem
    return _update(
        ctx,
        endpoint_id,
        [item.failing_since.remove(), item.healthy_at.set(clock.now_iso())],
        item.failing_since.exists(),
    )
