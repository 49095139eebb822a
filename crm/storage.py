"""The single DynamoDB table, as PynamoDB models.

Every item lives in one table (docs/architecture.md has the key layout and
docs/performance.md the request count of each access pattern). Items of different kinds share the generic
key attributes; a discriminator attribute (``kind``) lets one Query return a
customer's profile and timeline entries as their own classes.

The endpoint is never hard-coded: botocore reads ``AWS_ENDPOINT_URL`` (the local
emulator) and production leaves it unset.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    DiscriminatorAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from crm import settings
from crm.schema import Kind


def condition_failed(exc: Exception) -> bool:
    """A PynamoDB write error caused by its condition (the item was not as expected), as
    opposed to a throttle or an outage, which the caller must not swallow."""
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


class _Gsi1(GlobalSecondaryIndex):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class _Gsi2(GlobalSecondaryIndex):
    class Meta:
        index_name = "gsi2"
        projection = AllProjection()

    gsi2pk = UnicodeAttribute(hash_key=True)
    gsi2sk = UnicodeAttribute(range_key=True)


class Item(Model):
    """Base of every item: generic keys, sparse GSI keys, a TTL and the discriminator."""

    class Meta:
        table_name = settings.table_name()
        region = settings.region()
        max_retry_attempts = 3

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = DiscriminatorAttribute()
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    gsi2pk = UnicodeAttribute(null=True)
    gsi2sk = UnicodeAttribute(null=True)
    ttl = TTLAttribute(null=True)

    gsi1 = _Gsi1()
    gsi2 = _Gsi2()


class TenantItem(Item, discriminator="tenant"):
    """``T#<tenant>#`` / ``TENANT``; also listed on gsi1 ``TENANTS`` for operators."""

    KIND = Kind("tenant", "P", "TENANT", "tenant", gsi="gsi1 `TENANTS` / `<tenant>` (operators only)")

    name = UnicodeAttribute()
    status = UnicodeAttribute(default="active")
    plan = UnicodeAttribute(null=True)  # unused: the plan is the BillingItem's (crm/billing)
    created_at = UnicodeAttribute()


class BillingItem(Item, discriminator="billing"):
    """``T#<tenant>#`` / ``BILLING``: the tenant's plan and its Stripe subscription's state
    (crm/billing). Read with the API key and the tenant in one BatchGetItem, so every
    request knows its plan at no extra cost. No item: the tenant is on ``free``."""

    KIND = Kind(
        "billing (plan, Stripe subscription state)",
        "P",
        "BILLING",
        "tenant",
        gsi="gsi1 `BILLED` / `<tenant>` (tenants with a Stripe customer: reconcile, metering)",
    )

    plan = UnicodeAttribute(default="free")
    # free (never subscribed) | trialing | active | past_due | paused | canceled | incomplete | unpaid
    status = UnicodeAttribute(default="free")
    stripe_customer = UnicodeAttribute(null=True)
    subscription = UnicodeAttribute(null=True)  # the tenant's one live subscription
    subscription_created = NumberAttribute(null=True)  # its Stripe `created` (the older one wins a race)
    period_start = UnicodeAttribute(null=True)  # ISO 8601, UTC
    period_end = UnicodeAttribute(null=True)
    past_due_since = UnicodeAttribute(null=True)
    grace_until = UnicodeAttribute(null=True)  # past_due: writes work until then, then 402
    features = ListAttribute(of=UnicodeAttribute, null=True)  # active Stripe entitlements' lookup keys
    checkout_session = UnicodeAttribute(null=True)  # the open Checkout Session, if any
    seen = NumberAttribute(default=0)  # freshness of the stored Stripe state (never go back)
    updated_at = UnicodeAttribute(null=True)
    cancel_at_period_end = BooleanAttribute(null=True)  # canceled in the portal, ends with the period
    checkout_plan = UnicodeAttribute(null=True)  # the plan of the open Checkout Session


class StripeEventItem(Item, discriminator="stripe_event"):
    """``T#<tenant>#STRIPE`` / ``EVT#<event id>``: a Stripe event already applied to the
    tenant (de-duplication; Stripe retries for up to 3 days, kept 30)."""

    KIND = Kind(
        "Stripe event guard (the id only, TTL 30 days)",
        "P STRIPE",
        "EVT#<event id>",
        "tenant",
        gsi="— (expires by TTL)",
    )

    event_type = UnicodeAttribute()
    received_at = UnicodeAttribute()


class ApiKeyItem(Item, discriminator="api_key"):
    """``T#<tenant>#APIKEYS`` / ``<key id>``: only the SHA-256 of the secret is kept."""

    KIND = Kind("API key (only the secret's SHA-256)", "P APIKEYS", "<key id>", "tenant")

    name = UnicodeAttribute()
    prefix = UnicodeAttribute()
    secret_hash = UnicodeAttribute()
    scopes = ListAttribute(of=UnicodeAttribute)
    created_at = UnicodeAttribute()
    last4 = UnicodeAttribute()
    revoked_at = UnicodeAttribute(null=True)
    rotated_to = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute(null=True)  # the key that created it; None: the operator
    agent_id = UnicodeAttribute(null=True)  # an on-premise agent's key (crm/agents): the agent


class CustomerItem(Item, discriminator="customer"):
    """``T#<tenant>#C#<id>`` / ``PROFILE``; listed on gsi1 (by id) and gsi2 (by update)."""

    KIND = Kind(
        "customer profile (status active, erased, merging or merged)",
        "P C#<id>",
        "PROFILE",
        "customer",
        pii=("data",),
        erasure="blank",
        merge="recompute",
        events=True,
        export=True,
        gsi="gsi1 `P CUSTOMERS` / `<id>`; gsi2 `P CUSTOMERS` / `<updated_at>#<id>` (active only)",
    )

    customer_id = UnicodeAttribute()
    status = UnicodeAttribute(default="active")
    data = JSONAttribute(default=dict)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    erased_at = UnicodeAttribute(null=True)
    # an erasure's follow-up (crm/erasure.py): {"status": "pending", "terms": [...]} until
    # it is done, then {"status": "complete"}
    erasure = JSONAttribute(null=True)
    # merges (crm/merge.py): a merged or merging profile names its survivor; ``merge``
    # holds the procedure's state (on the other: into, started_at, counts; on the
    # survivor: the id being merged into it, while that runs)
    merged_into = UnicodeAttribute(null=True)
    merge = JSONAttribute(null=True)
    version = VersionAttribute()


class EventItem(Item, discriminator="event"):
    """``T#<tenant>#C#<id>`` / ``EV#<occurred_at>#<event id>``: newest last in the partition."""

    KIND = Kind(
        "timeline entry",
        "P C#<id>",
        "EV#<occurred_at>#<event id>",
        "customer",
        pii=("data",),
        erasure="delete",
        merge="move",
        export=True,
    )

    event_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    data = JSONAttribute(default=dict)
    created_at = UnicodeAttribute()


class ChangeItem(Item, discriminator="change"):
    """``T#<tenant>#CHANGES`` / ``<seq>``: one domain event in the tenant's change feed
    (crm/changes.py). ``seq`` is 16 digits, strictly increasing per tenant and close to
    the commit's time in microseconds, so a cursor is also a time."""

    KIND = Kind(
        "change feed entry (a domain event, kept for the retention period)",
        "P CHANGES",
        "<seq>",
        "tenant",
        pii=("data",),
        erasure="blank",
    )

    change_id = UnicodeAttribute()  # the event's id (``order.paid:<order id>``)
    type = UnicodeAttribute()
    occurred_at = UnicodeAttribute()
    committed_at = UnicodeAttribute()
    object_type = UnicodeAttribute()
    object_id = UnicodeAttribute()
    customer_id = UnicodeAttribute(null=True)
    data = JSONAttribute(default=dict)


class ChangeGuardItem(Item, discriminator="change_guard"):
    """``T#<tenant>#CHG#<event id>`` / ``CHG``: the event is in the feed, at ``seq``: a
    redelivered or replayed stream record finds it and adds nothing."""

    KIND = Kind("change feed guard (one per event id)", "P CHG#<event id>", "CHG", "tenant")

    seq = UnicodeAttribute()


class ChangeHeadItem(Item, discriminator="change_head"):
    """``T#<tenant>#`` / ``CHANGES``: the feed's last ``seq``. Every append moves it with a
    condition on the value it read, so two writers of one tenant take turns and the seqs
    become visible in the order they were given."""

    KIND = Kind("change feed head (the last seq)", "P", "CHANGES", "tenant")

    seq = UnicodeAttribute()


class WebhookCursorItem(Item, discriminator="webhook_cursor"):
    """``T#<tenant>#WHE#<endpoint>`` / ``CURSOR``: how far into the change feed the endpoint's
    deliveries were made (crm/webhooks/deliveries.py), and who is making them (a lease)."""

    KIND = Kind("webhook endpoint's feed cursor and fan-out lease", "P WHE#<endpoint id>", "CURSOR", "tenant")

    seq = UnicodeAttribute()
    lease_until = UnicodeAttribute(null=True)
    # an ordered endpoint's mark: every delivery below this seq is done (delivered or given up)
    ordered_from = UnicodeAttribute(null=True)


class WebhookDeliveryItem(Item, discriminator="webhook_delivery"):
    """``T#<tenant>#WHE#<endpoint>`` / ``D#<seq>``: one change's delivery to one endpoint and
    its attempts (the delivery log, kept 30 days). While an attempt is due it is listed on
    gsi2 ``WEBHOOK_DUE#0`` / ``<due at>#<tenant>#<endpoint>#<seq>`` for the retry sweep."""

    KIND = Kind(
        "webhook delivery (status, attempts with response excerpts), kept 30 days",
        "P WHE#<endpoint id>",
        "D#<seq>",
        "tenant",
        gsi="gsi2 `WEBHOOK_DUE#0` / `<due at>#<tenant>#<endpoint id>#<seq>` while an attempt is due",
    )

    endpoint_id = UnicodeAttribute()
    change_id = UnicodeAttribute()  # the webhook-id: the same on every attempt and replay
    type = UnicodeAttribute()
    seq = UnicodeAttribute()
    status = UnicodeAttribute()  # pending | delivered | failed
    attempts = JSONAttribute(default=list)  # [{"at", "status", "latency_ms", "excerpt", "error"}]
    due_at = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class GuardItem(Item, discriminator="guard"):
    """``T#<tenant>#U#<kind>#<value>`` / ``U``: at most one customer (or order) per value.
    An order's guard is also listed under the shop's order number, when the order has one
    (crm/orders/service.py ``order_guard``)."""

    KIND = Kind(
        "unique guard (email, external id; an order's source id)",
        "P U#<email, xid or order>#<value>",
        "U",
        "customer",
        pii=("pk",),
        erasure="delete",
        merge="move",
        gsi="gsi1 `P ORDERNO#<number>` / `<order id>` (an order's guard, when the order has a number)",
    )

    customer_id = UnicodeAttribute()
    order_id = UnicodeAttribute(null=True)


class OrderItem(Item, discriminator="order"):
    """``T#<tenant>#C#<customer>`` / ``A#ORD#<order id>``: in the customer's item collection,
    below the timeline; listed per tenant on gsi1 ``T#<tenant>#ORDERS`` / ``<order id>``
    and per status on gsi2 ``T#<tenant>#ORDERS#<status>`` / ``<order id>``."""

    KIND = Kind(
        "order (a financial record: kept, its free text blanked)",
        "P C#<id>",
        "A#ORD#<order id>",
        "customer",
        pii=("data.cancel_reason", "data.refunds.reason"),
        erasure="blank",
        merge="move",
        events=True,
        export=True,
        gsi="gsi1 `P ORDERS` / `<order id>`; gsi2 `P ORDERS#<status>` / `<order id>`",
    )

    order_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    status = UnicodeAttribute()
    data = JSONAttribute(default=dict)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    def serialize(self, null_check: bool = True) -> dict[str, dict[str, Any]]:
        """The status index follows the status on every write path (create, transitions,
        imports, a merge's copy), since every one of them serializes the item here."""
        if self.gsi1pk and self.status:
            self.gsi2pk, self.gsi2sk = f"{self.gsi1pk}#{self.status}", self.gsi1sk
        return super().serialize(null_check=null_check)


class OrderPointerItem(Item, discriminator="order_pointer"):
    """``T#<tenant>#O#<order id>`` / ``O``: which customer's collection holds the order."""

    KIND = Kind("order pointer", "P O#<order id>", "O", "customer", merge="move")

    customer_id = UnicodeAttribute()


class RecentOrdersItem(Item, discriminator="recent_orders"):
    """``T#<tenant>#C#<customer>`` / ``ORDERS``: the 10 latest orders in brief. It sorts
    between the timeline and ``PROFILE``, so the 360 Query reads it for free."""

    KIND = Kind("recent orders (10, in brief)", "P C#<id>", "ORDERS", "customer", merge="recompute")

    customer_id = UnicodeAttribute()
    recent = JSONAttribute(default=list)
    version = VersionAttribute()


class LoyaltyItem(Item, discriminator="loyalty"):
    """``T#<tenant>#C#<customer>`` / ``LOYALTY``: the points book (crm/loyalty/book.py). It
    sorts inside the 360 range, so the 360 Query reads the balance for free. When the book
    has something due, gsi2 ``LOYALTY_DUE#<shard>`` / ``<due at>#<tenant>#<customer>``
    lists it for the scheduled run (a sparse, cross-tenant index, read only by it)."""

    KIND = Kind(
        "points book (balance, lots, tier)",
        "P C#<id>",
        "LOYALTY",
        "customer",
        merge="recompute",
        events=True,
        export=True,
        gsi="gsi2 `LOYALTY_DUE#<0-3>` / `<due at>#<tenant>#<id>` while something is due",
    )

    customer_id = UnicodeAttribute()
    book = JSONAttribute(default=dict)
    updated_at = UnicodeAttribute()
    version = VersionAttribute()


class MetricsItem(Item, discriminator="metrics"):
    """``T#<tenant>#C#<customer>`` / ``METRICS``: what segments measure a customer by
    (crm/segments): each order's contribution, the aggregate, RFM scores, lifetime value,
    VIP, a flat copy of the profile and loyalty facts rules read, and the customer's
    segment memberships. It sorts inside the 360 range (between ``LOYALTY`` and
    ``ORDERS``), so the 360 Query reads it for free. Every customer with one is listed on
    gsi1 ``T#<tenant>#METRICS`` / ``<customer>`` (segment builds, previews and the RFM cut
    points read it, never a Scan); while a time condition or a score is due to change,
    gsi2 ``SEGMENT_DUE#<shard>`` / ``<due at>#<tenant>#<customer>`` lists it for the
    scheduled run (like the loyalty due index)."""

    KIND = Kind(
        "segment metrics (orders' contributions, aggregate, RFM, LTV, VIP, rule facts, memberships)",
        "P C#<id>",
        "METRICS",
        "customer",
        pii=("facts",),
        # blanked, not deleted, in the erasure's request: the segments subscriber then
        # removes it with its memberships, counts and RFM cell (crm/segments/maintain.py)
        erasure="blank",
        merge="recompute",
        events=True,
        export=True,
        gsi="gsi1 `P METRICS` / `<id>`; gsi2 `SEGMENT_DUE#<0-3>` / `<due at>#<tenant>#<id>` while something is due",
    )

    customer_id = UnicodeAttribute()
    # order id -> its contribution (crm/segments/aggregate.py); {} when ``large`` (too many
    # orders to keep: the aggregate is recomputed from the orders on every change)
    orders = JSONAttribute(default=dict)
    large = BooleanAttribute(default=False)
    agg = JSONAttribute(default=dict)  # the aggregate: orders.count, orders.net_spend, ...
    scores = JSONAttribute(default=dict)  # {"r", "f", "m", "segment", "ltv": {...}, "vip"}
    # field name -> value, what rules are evaluated on; None once an erasure blanked it
    facts = JSONAttribute(default=dict, null=True)
    # segment id -> {"since": ISO time, "v": the rule's version, "name": the segment's name}
    memberships = JSONAttribute(default=dict)
    # segment ids whose change in this write was a build's (no segment.entered/exited)
    quiet = ListAttribute(of=UnicodeAttribute, null=True)
    due_at = UnicodeAttribute(null=True)  # the next instant a rule or a score may flip
    updated_at = UnicodeAttribute()
    version = VersionAttribute()


class SegmentItem(Item, discriminator="segment"):
    """``T#<tenant>#SEG#<segment id>`` / ``SEGMENT``: a segment (name, rule, build state)
    and its exact member count (ADD in the transaction that adds or removes a member).
    Listed on gsi1 ``T#<tenant>#SEGMENTS`` / ``<segment id>``."""

    KIND = Kind(
        "segment (name, rule, build progress, member count)",
        "P SEG#<id>",
        "SEGMENT",
        "tenant",
        gsi="gsi1 `P SEGMENTS` / `<id>`",
    )

    segment_id = UnicodeAttribute()
    name = UnicodeAttribute()
    description = UnicodeAttribute(null=True)
    rule = JSONAttribute(default=dict)  # normalized by crm/segments/rules.parse
    rule_version = NumberAttribute(default=1)  # +1 on every change of the rule: a rebuild
    status = UnicodeAttribute(default="building")  # building | ready
    # the background build: {"version", "cursor", "processed", "total", "started_at", "finished_at"}
    build = JSONAttribute(default=dict)
    member_count = NumberAttribute(default=0)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()


class SegmentMemberItem(Item, discriminator="segment_member"):
    """``T#<tenant>#SEG#<segment id>`` / ``M#<customer>``: one member, for the members'
    pages. Written with the customer's ``METRICS`` in one transaction (put
    ``attribute_not_exists``, delete ``attribute_exists``, with the count's ADD)."""

    KIND = Kind(
        "segment member (ids only; removed when the customer leaves, is erased or merged)",
        "P SEG#<id>",
        "M#<customer id>",
        "customer",
        merge="drop",
    )

    segment_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    since = UnicodeAttribute()
    rule_version = NumberAttribute(default=1)


class SegmentCatalogueItem(Item, discriminator="segment_catalogue"):
    """``T#<tenant>#`` / ``SEGMENTS``: every segment's rule in one item, so maintaining a
    customer reads all rules in the same BatchGetItem as the customer (no Query), plus the
    tenant's reporting currency, RFM cut points and VIP threshold (the schedule's)."""

    KIND = Kind("segment rules, currency, RFM cut points and VIP threshold", "P", "SEGMENTS", "tenant")

    # segment id -> {"name", "rule" (normalized), "v" (rule version)}
    segments = JSONAttribute(default=dict)
    currency = UnicodeAttribute(null=True)  # net spend is counted in it (unset: the first order's)
    cuts = JSONAttribute(null=True)  # {"r": [4 days], "f": [4 counts], "m": [4 amounts]}; None: defaults
    vip_threshold = NumberAttribute(null=True)  # ltv.historical at the top 20 % boundary
    cuts_at = UnicodeAttribute(null=True)
    backfilled_at = UnicodeAttribute(null=True)  # every customer has METRICS since then
    updated_at = UnicodeAttribute(null=True)
    version = VersionAttribute()


class RfmGridItem(Item, discriminator="rfm_grid"):
    """``T#<tenant>#`` / ``RFM``: customers per recency x frequency cell, attributes
    ``c<r><f>`` ADDed in the transaction that moves a customer's scores (exact, 1 GetItem)."""

    KIND = Kind("RFM grid counts (recency x frequency)", "P", "RFM", "tenant")


class EmailSettingsItem(Item, discriminator="email_settings"):
    """``T#<tenant>#`` / ``EMAIL``: the tenant's postal address (every marketing email
    carries it), default sender and SES tenant name (crm/email)."""

    KIND = Kind("email settings (postal address, default sender, SES tenant)", "P", "EMAIL", "tenant")

    postal_address = UnicodeAttribute(null=True)
    default_sender = UnicodeAttribute(null=True)  # an address of a verified identity
    from_name = UnicodeAttribute(null=True)
    reply_to = UnicodeAttribute(null=True)
    ses_tenant = UnicodeAttribute(null=True)  # the SES tenant it sends as, where the account has them
    time_zone = UnicodeAttribute(null=True)  # IANA; journeys' birthdays and wait-until (None: UTC)
    updated_at = UnicodeAttribute(null=True)
    version = VersionAttribute()


class SenderItem(Item, discriminator="email_sender"):
    """``T#<tenant>#SENDERS`` / ``<identity>``: a domain or address identity created in
    SES for the tenant, with the DKIM records to publish and its verification state."""

    KIND = Kind(
        "sender identity (domain or address, DKIM records, status)", "P SENDERS", "<identity, lower case>", "tenant"
    )

    identity = UnicodeAttribute()
    type = UnicodeAttribute()  # domain | address
    status = UnicodeAttribute(default="pending")  # pending | verified | failed
    dkim = JSONAttribute(default=list)  # [{"name", "type": "CNAME", "value"}]
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class TemplateItem(Item, discriminator="email_template"):
    """``T#<tenant>#TEMPLATES`` / ``<template id>``: an email template as saved: the
    subject, the HTML with its CSS inlined and the text part (given or derived)."""

    KIND = Kind("email template (subject, HTML with CSS inlined, text)", "P TEMPLATES", "<template id>", "tenant")

    template_id = UnicodeAttribute()
    name = UnicodeAttribute()
    template_kind = UnicodeAttribute()  # marketing | transactional (the API's "kind")
    subject = UnicodeAttribute()
    html = UnicodeAttribute()  # CSS inlined at save
    text = UnicodeAttribute()
    text_derived = BooleanAttribute(default=False)  # derived from the HTML (none was given)
    source_html = UnicodeAttribute(null=True)  # the HTML as given (before inlining)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()


class CampaignItem(Item, discriminator="campaign"):
    """``T#<tenant>#CAMPAIGNS`` / ``<campaign id>``: a campaign, its state, audience
    resolution checkpoint, progress and stats. Counters are ADDed by UpdateItems that
    neither check nor bump ``version`` (the sender and the SES events handler). While
    ``scheduled``, listed on gsi2 ``CAMPAIGN_DUE`` / ``<send_at>#<tenant>#<id>``."""

    KIND = Kind(
        "email campaign (state, progress, stats)",
        "P CAMPAIGNS",
        "<campaign id>",
        "tenant",
        gsi="gsi2 `CAMPAIGN_DUE` / `<send_at>#<tenant>#<id>` while scheduled",
    )

    campaign_id = UnicodeAttribute()
    name = UnicodeAttribute()
    template_id = UnicodeAttribute()
    sender = UnicodeAttribute(null=True)
    segment_id = UnicodeAttribute()
    status = UnicodeAttribute(default="draft")  # draft | scheduled | sending | paused | sent | cancelled
    send_at = UnicodeAttribute(null=True)
    audience = JSONAttribute(default=dict)  # {"cursor", "pages", "resolved": bool}
    total = NumberAttribute(default=0)
    sent = NumberAttribute(default=0)
    skipped = NumberAttribute(default=0)
    failed = NumberAttribute(default=0)
    delivered = NumberAttribute(default=0)
    bounced = NumberAttribute(default=0)
    complained = NumberAttribute(default=0)
    opened = NumberAttribute(default=0)
    clicked = NumberAttribute(default=0)
    unsubscribed = NumberAttribute(default=0)
    deferred = NumberAttribute(default=0)  # recipients waiting for their frequency cap (ADD +1/-1)
    # audience pages enqueued so far: the checkpoint's condition (crm/email/audience.py)
    audience_pages = NumberAttribute(default=0)
    progress_at = UnicodeAttribute(null=True)  # the audience's last checkpoint (stall detection)
    paused_seconds = NumberAttribute(default=0)  # time spent paused (the rate leaves it out)
    paused_at = UnicodeAttribute(null=True)
    paused_reason = UnicodeAttribute(null=True)  # plan_limit: paused by the sender (the month's allowance)
    template_kind = UnicodeAttribute(null=True)  # the template's kind when the send started
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    started_at = UnicodeAttribute(null=True)
    finished_at = UnicodeAttribute(null=True)
    version = VersionAttribute()


class SendItem(Item, discriminator="email_send"):
    """``T#<tenant>#SEND#<campaign id>`` / ``R#<customer id>``: one recipient's send,
    put (``attribute_not_exists``) before the SES call and completed after it: the
    exactly-once record (docs/email.md). Ids only, no address."""

    KIND = Kind(
        "email send record (ids, state, SES message id; no address)",
        "P SEND#<campaign id>",
        "R#<customer id>",
        "tenant",
        gsi="— (TTL 400 days)",
    )

    send_id = UnicodeAttribute()  # the campaign's id
    customer_id = UnicodeAttribute()
    state = UnicodeAttribute(default="sending")  # deferred | sending | sent | skipped | failed
    attempt = NumberAttribute(default=1)
    lease_until = UnicodeAttribute(null=True)  # while sending: another worker may take over after it
    message_id = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)  # skipped or failed: why (no_consent, suppressed, ...)
    until = UnicodeAttribute(null=True)  # deferred (frequency cap): not before this instant
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class SuppressionItem(Item, discriminator="email_suppression"):
    """``T#<tenant>#SUPPRESSED`` / ``<SHA-256 of the lower-cased address>``: an address
    the tenant never sends marketing to again (a permanent bounce, a complaint, an
    unsubscribe). The digest, not the address: it outlives an erasure without keeping
    personal data in the clear."""

    KIND = Kind("suppressed address (its SHA-256 only)", "P SUPPRESSED", "<sha256 of the address>", "tenant")

    reason = UnicodeAttribute()  # bounce | complaint | unsubscribe | manual
    detail = UnicodeAttribute(null=True)
    message_id = UnicodeAttribute(null=True)
    at = UnicodeAttribute()


class EmailCapItem(Item, discriminator="email_cap"):
    """``T#<tenant>#C#<customer>`` / ``C#EMAILCAP``: when the customer last got a
    marketing email, for the frequency cap across campaigns and journeys. Sorts
    below ``EV#``, outside the 360 range."""

    KIND = Kind(
        "frequency cap (last marketing email)",
        "P C#<id>",
        "C#EMAILCAP",
        "customer",
        erasure="delete",
        merge="drop",
    )

    customer_id = UnicodeAttribute()
    last_marketing_at = UnicodeAttribute()


class EmailEventItem(Item, discriminator="email_event"):
    """``T#<tenant>#EMAILEVT`` / ``<SES message id>#<event type>#<recipient digest>``: an
    SES event already counted (de-duplication of redelivered events; TTL 30 days)."""

    KIND = Kind(
        "SES event guard (TTL 30 days)",
        "P EMAILEVT",
        "<message id>#<type>#<digest>",
        "tenant",
        gsi="— (expires by TTL)",
    )

    at = UnicodeAttribute()


class EmailRateItem(Item, discriminator="email_rate"):
    """``EMAILRATE#<tenant id or ACCOUNT>`` / ``BUCKET``: a token bucket that every
    sending Lambda draws from (the tenant's plan rate; the SES account's send rate)."""

    KIND = Kind(
        "send-rate token bucket (per tenant and for the SES account)",
        "EMAILRATE#<tenant or ACCOUNT>",
        "BUCKET",
        "global",
    )

    tokens = NumberAttribute(default=0)
    refilled_at = NumberAttribute(default=0)  # epoch milliseconds
    rate = NumberAttribute(default=1)  # tokens per second


class JourneyItem(Item, discriminator="journey"):
    """``T#<tenant>#JOURNEYS`` / ``<journey id>``: a journey's definition (docs/journeys.md)
    and its run counters, ADDed by the runner without checking or bumping ``version``."""

    KIND = Kind("journey (definition, status, run counters)", "P JOURNEYS", "<journey id>", "tenant")

    journey_id = UnicodeAttribute()
    name = UnicodeAttribute()
    status = UnicodeAttribute(default="draft")  # draft | active | paused | archived
    definition = JSONAttribute(default=dict)  # crm/journeys/schemas.JourneyDefinition, as validated
    started = NumberAttribute(default=0)
    completed = NumberAttribute(default=0)
    exited = NumberAttribute(default=0)
    emails = NumberAttribute(default=0)  # send steps recorded sent
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()


class JourneyRunItem(Item, discriminator="journey_run"):
    """``T#<tenant>#C#<customer>`` / ``C#JRUN#<journey id>#<occurrence digest>``: one
    customer's run of a journey (crm/journeys/plan.Run as ``state``), written conditionally
    on ``version``. A birthday journey's schedule for the customer is a run of occurrence
    ``next-birthday`` (``state.birthday``). While due, listed on gsi2 ``JOURNEY_DUE#<0-3>``
    / ``<due at>#<tenant>#<customer>``. Sorts below ``EV#``: outside the 360 range."""

    KIND = Kind(
        "journey run (step, status, due time, sends; ids only)",
        "P C#<id>",
        "C#JRUN#<journey id>#<digest>",
        "customer",
        pii=("event",),
        erasure="delete",
        merge="drop",
        gsi="gsi2 `JOURNEY_DUE#<0-3>` / `<due at>#<tenant>#<id>` while due",
    )

    customer_id = UnicodeAttribute()
    journey_id = UnicodeAttribute()
    status = UnicodeAttribute()  # waiting | sending | done | exited | scheduled (a birthday's)
    step = NumberAttribute(default=0)  # the sender's ConditionCheck: still sending this step
    due_at = UnicodeAttribute(null=True)
    state = JSONAttribute(default=dict)  # the planner's Run
    event = JSONAttribute(null=True)  # the trigger event templates see ({{ event }})
    updated_at = UnicodeAttribute()
    version = VersionAttribute()


class CheckoutItem(Item, discriminator="checkout"):
    """``T#<tenant>#C#<customer>`` / ``C#CHECKOUT#<checkout id>``: a started checkout
    (``POST /v1/checkouts``); its insert is the ``checkout.started`` event. Put once
    (``attribute_not_exists``): a repeated POST is the same checkout."""

    KIND = Kind(
        "started checkout (cart total, items, URL)",
        "P C#<id>",
        "C#CHECKOUT#<checkout id>",
        "customer",
        pii=("data",),
        erasure="delete",
        merge="drop",
        events=True,
        export=True,
    )

    customer_id = UnicodeAttribute()
    checkout_id = UnicodeAttribute()
    started_at = UnicodeAttribute()
    data = JSONAttribute(default=dict)  # {"currency", "total", "url", "items": [...]}
    created_at = UnicodeAttribute()


class LedgerItem(Item, discriminator="ledger"):
    """``T#<tenant>#C#<customer>`` / ``B#LED#<seq>``: one append-only ledger entry."""

    KIND = Kind(
        "ledger entry",
        "P C#<id>",
        "B#LED#<seq, 10 digits>",
        "customer",
        pii=("entry.reason",),
        erasure="blank",
        merge="move",
        events=True,
        export=True,
    )

    customer_id = UnicodeAttribute()
    entry = JSONAttribute(default=dict)


class RedemptionItem(Item, discriminator="redemption"):
    """``T#<tenant>#C#<customer>`` / ``B#RDM#<digest of the Idempotency-Key>``: written in
    the redemption's own transaction, so one key redeems at most once."""

    KIND = Kind(
        "redemption guard",
        "P C#<id>",
        "B#RDM#<hash of the Idempotency-Key>",
        "customer",
        pii=("result.entries.reason",),
        erasure="blank",
        merge="move",
        merge_keeps_survivors=True,
    )

    customer_id = UnicodeAttribute()
    result = JSONAttribute(default=dict)


class LoyaltyProgramItem(Item, discriminator="loyalty_program"):
    """``T#<tenant>#LOYALTY`` / ``PROGRAM``: the tenant's program."""

    KIND = Kind("loyalty program", "P LOYALTY", "PROGRAM", "tenant")

    data = JSONAttribute(default=dict)
    updated_at = UnicodeAttribute()
    version = VersionAttribute()


class IndexEntryItem(Item, discriminator="index"):
    """``T#<tenant>#I#<kind>#<value>`` / ``<customer id>``: a non-unique lookup (phone, tag)."""

    KIND = Kind(
        "lookup entry (phone, tag) or search entry (name words, email, phone digits)",
        "P I#<phone or tag>#<value> or P S#<first character>",
        "<customer id> or <token>#<customer id>",
        "customer",
        pii=("pk", "sk"),
        erasure="delete",
        merge="move",
    )

    customer_id = UnicodeAttribute()


class IdentitySettingsItem(Item, discriminator="identity_settings"):
    """``T#<tenant>#SETTINGS`` / ``IDENTITY``: the tenant's identity-resolution order."""

    KIND = Kind("identity settings", "P SETTINGS", "IDENTITY", "tenant")

    data = JSONAttribute(default=dict)
    updated_at = UnicodeAttribute()


class IdentityConflictItem(Item, discriminator="identity_conflict"):
    """``T#<tenant>#CONFLICT#<conflict id>`` / ``CONFLICT``: a record identity resolution
    would not guess about (crm/identity.py). The id is derived from what conflicted, so
    the same conflict is stored once. Listed newest first on gsi1 ``T#<tenant>#CONFLICTS``
    and per status on gsi2 ``T#<tenant>#CONFLICTS#<status>``, both ``<detected_at>#<id>``."""

    KIND = Kind(
        "identity conflict (the incoming record and the candidates)",
        "P CONFLICT#<conflict id>",
        "CONFLICT",
        "tenant",
        pii=("data",),
        erasure="delete",
        export=True,
        gsi="gsi1 `P CONFLICTS` / `<detected_at>#<id>`; gsi2 `P CONFLICTS#<status>` / same",
    )

    conflict_id = UnicodeAttribute()
    status = UnicodeAttribute(default="open")
    data = JSONAttribute(default=dict)
    detected_at = UnicodeAttribute()
    resolved_at = UnicodeAttribute(null=True)


def connection():
    """The low-level PynamoDB connection shared by the models (for counting requests)."""
    return Item._get_connection().connection


class UsageItem(Item, discriminator="usage"):
    """``T#<tenant>#`` / ``USAGE``: the tenant's usage counters (crm/billing/usage.py), one
    item so that a flush or a dispatcher batch is one UpdateItem and GET /v1/billing one
    GetItem. Besides the declared attributes it holds per-month counters
    ``m#<YYYY-MM>#<counter>`` and the rate limiter's window totals ``rl#<window>``
    (crm/billing/ratelimit.py), written with ADD by name; PynamoDB ignores them."""

    KIND = Kind("usage counters (live customers, per-month counters, rate-limit windows)", "P", "USAGE", "tenant")

    customers = NumberAttribute(null=True)  # live profiles (active or merging), from the stream
    # the Stripe meter's bookkeeping (crm/billing/meter.py): the last hour done, what the
    # billing period has reported so far, and the hour being reported (written before the send)
    metered_through = UnicodeAttribute(null=True)
    metered_total = NumberAttribute(null=True)
    metered_period = UnicodeAttribute(null=True)
    meter_pending = UnicodeAttribute(null=True)
    meter_pending_value = NumberAttribute(null=True)
    metered_period_pending = UnicodeAttribute(null=True)


# --- B2B accounts (crm/accounts; docs/accounts.md) ----------------------------------------
# An account's items share its partition ``P A#<account id>``: ``PROFILE``, ``SUMMARY``
# (balance and the latest orders and invoices in brief), its contacts (``CONTACT#``), and
# below them its orders and invoices, so GET /v1/accounts/{id}/360 reads the profile, the
# summary and the contacts with one Query (sk >= ``CONTACT#``, newest first).


class AccountItem(Item, discriminator="account"):
    """``T#<tenant>#A#<account>`` / ``PROFILE``: a company. Listed on gsi1 ``P ACCOUNTS`` /
    ``<id>`` and, once it has a name, on gsi2 ``P ACCOUNTS#NAME`` / ``<normalised name>#<id>``
    (prefix search). A ``stub`` was created from a reference (a contact, an order or an
    invoice naming the account's external id) before the account's own record arrived."""

    KIND = Kind(
        "B2B account (company profile; a stub until its own record arrives)",
        "P A#<id>",
        "PROFILE",
        "account",
        gsi="gsi1 `P ACCOUNTS` / `<id>`; gsi2 `P ACCOUNTS#NAME` / `<normalised name>#<id>`",
    )

    account_id = UnicodeAttribute()
    status = UnicodeAttribute(default="active")
    stub = BooleanAttribute(default=False)
    data = JSONAttribute(default=dict)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()


class AccountSummaryItem(Item, discriminator="account_summary"):
    """``T#<tenant>#A#<account>`` / ``SUMMARY``: what open invoices owe per currency and the
    10 latest orders and invoices in brief, written in the transaction of each invoice or
    order write (conditional on ``version``)."""

    KIND = Kind(
        "account summary (balance per currency, 10 latest orders and invoices)", "P A#<id>", "SUMMARY", "account"
    )

    account_id = UnicodeAttribute()
    balance = JSONAttribute(default=dict)  # currency -> minor units still owed on open invoices
    open_invoices = NumberAttribute(default=0)
    orders = JSONAttribute(default=list)  # AccountOrder dicts, newest placed first
    invoices = JSONAttribute(default=list)  # InvoiceSummary dicts, newest issued first
    updated_at = UnicodeAttribute(null=True)
    version = VersionAttribute()


class ContactItem(Item, discriminator="account_contact"):
    """``T#<tenant>#A#<account>`` / ``CONTACT#<customer>``: a customer is a contact of the
    account, with a role. The customer's profile carries ``account_id``/``account_role``
    too (at most one account), written in the same transaction. gsi1 ``P CONTACT#<customer>``
    finds a customer's link without the profile (the erasure follow-up)."""

    KIND = Kind(
        "account contact (a customer's link to an account, with a role)",
        "P A#<id>",
        "CONTACT#<customer id>",
        "customer",
        pii=("role",),
        erasure="delete",
        merge="move",
        gsi="gsi1 `P CONTACT#<customer id>` / `<account id>`",
    )

    account_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    role = UnicodeAttribute(null=True)
    source = UnicodeAttribute(default="api")  # api, or the connector that linked it
    source_updated_at = UnicodeAttribute(null=True)  # the vendor's time of that link
    linked_at = UnicodeAttribute()


class AccountOrderItem(Item, discriminator="account_order"):
    """``T#<tenant>#A#<account>`` / ``A#ORD#<source>#<external id>``: an order of the account.
    A contact's order is a brief pointing at the customer's order (``order_id``); an order
    no contact person placed is kept here whole (lines, totals, vendor state)."""

    KIND = Kind(
        "account order (a brief of a contact's order, or the whole order when no contact placed it)",
        "P A#<id>",
        "A#ORD#<source>#<external id>",
        "account",
    )

    account_id = UnicodeAttribute()
    data = JSONAttribute(default=dict)
    updated_at = UnicodeAttribute()
    version = VersionAttribute()


class InvoiceItem(Item, discriminator="invoice"):
    """``T#<tenant>#INV#<invoice>`` / ``INVOICE``: an invoice (written by connectors). Listed
    newest first on gsi1 ``P INVOICES`` / ``<issued_at>#<id>`` and per status on gsi2
    ``P INVOICES#<status>`` / the same. Copies sit in its account's and its customer's
    partitions (``A#INV#<issued_at>#<id>``), written in the same transaction."""

    KIND = Kind(
        "invoice (home copy)",
        "P INV#<id>",
        "INVOICE",
        "tenant",
        gsi="gsi1 `P INVOICES` / `<issued_at>#<id>`; gsi2 `P INVOICES#<status>` / `<issued_at>#<id>`",
    )

    invoice_id = UnicodeAttribute()
    account_id = UnicodeAttribute(null=True)
    customer_id = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    data = JSONAttribute(default=dict)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    def serialize(self, null_check: bool = True) -> dict[str, dict[str, Any]]:
        """Both indexes follow the status and issue date on every write path."""
        if self.invoice_id and self.data.get("issued_at"):
            tenant = self.pk.split("INV#", 1)[0]
            self.gsi1pk, self.gsi1sk = f"{tenant}INVOICES", f"{self.data['issued_at']}#{self.invoice_id}"
            self.gsi2pk, self.gsi2sk = f"{tenant}INVOICES#{self.status}", self.gsi1sk
        return super().serialize(null_check=null_check)


class AccountInvoiceItem(Item, discriminator="account_invoice"):
    """``T#<tenant>#A#<account>`` / ``A#INV#<issued_at>#<invoice>``: the account's copy of an
    invoice (GET /v1/invoices?account_id= is one Query, newest first)."""

    KIND = Kind("an account's invoice (copy, by issue date)", "P A#<id>", "A#INV#<issued_at>#<invoice id>", "account")

    invoice_id = UnicodeAttribute()
    account_id = UnicodeAttribute(null=True)
    customer_id = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    data = JSONAttribute(default=dict)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class CustomerInvoiceItem(Item, discriminator="customer_invoice"):
    """``T#<tenant>#C#<customer>`` / ``A#INV#<issued_at>#<invoice>``: the billed customer's
    copy of an invoice (GET /v1/invoices?customer_id= is one Query; the export lists it).
    A financial record without personal data: kept on erasure, like orders."""

    KIND = Kind(
        "a customer's invoice (copy, by issue date)",
        "P C#<id>",
        "A#INV#<issued_at>#<invoice id>",
        "customer",
        merge="move",
        export=True,
    )

    invoice_id = UnicodeAttribute()
    account_id = UnicodeAttribute(null=True)
    customer_id = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    data = JSONAttribute(default=dict)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class AccountGuardItem(Item, discriminator="account_guard"):
    """``T#<tenant>#U#<account or invoice>#<source>#<external id>`` / ``U``: at most one
    account (or invoice) per external id of a source; names its id."""

    KIND = Kind(
        "external-id guard of an account or an invoice",
        "P U#<account or invoice>#<source>#<external id>",
        "U",
        "account",
    )

    target_id = UnicodeAttribute()


class ShipmentItem(Item, discriminator="shipment"):
    """``T#<tenant>#C#<customer>`` / ``A#SHP#<shipment id>``: a parcel of one of the
    customer's orders (crm/shipments): carrier, tracking number, status, the checkpoint
    history (ordered by checkpoint time, each kept once), the provider's tracker. Below
    the timeline, like orders. While not terminal (delivered, returned, failed), gsi2
    ``SHIPMENT_DUE#<shard>`` / ``<due at>#<tenant>#<shipment>`` lists it for the re-poll
    schedule (a sparse, cross-tenant index read only by it; the item's own key names the
    customer, so a merge's move needs no rewrite of it)."""

    KIND = Kind(
        "shipment (carrier, tracking number, status, checkpoints, provider tracker)",
        "P C#<id>",
        "A#SHP#<shipment id>",
        "customer",
        pii=("checkpoints",),
        erasure="delete",
        merge="move",
        events=True,
        export=True,
        gsi="gsi2 `SHIPMENT_DUE#0` / `<due at>#<tenant>#<shipment id>` while not terminal",
    )

    shipment_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    order_id = UnicodeAttribute()
    carrier = UnicodeAttribute()
    tracking_number = UnicodeAttribute()
    status = UnicodeAttribute(default="pre_transit")
    status_at = UnicodeAttribute(null=True)  # the checkpoint time of the current status
    checkpoints = JSONAttribute(default=list)  # [{"at", "status", "message", "location", "detail", "key"}]
    # the provider's tracker: {"connection_id", "connector", "tracker_id", "url", "status_detail", "est_delivery_at"}
    provider = JSONAttribute(null=True)
    shipped_at = UnicodeAttribute(null=True)
    delivered_at = UnicodeAttribute(null=True)
    source_updated_at = UnicodeAttribute(null=True)  # the provider's updated_at last applied
    seen_events = ListAttribute(of=UnicodeAttribute, null=True)  # the provider's latest event ids
    due_at = UnicodeAttribute(null=True)  # next re-poll (None: terminal)
    source = UnicodeAttribute(default="api")  # api | the e-commerce connector that imported it
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()


class ShipmentPointerItem(Item, discriminator="shipment_pointer"):
    """``T#<tenant>#SHP#<shipment id>`` / ``S``: whose collection holds the shipment. The
    shipment id is derived from the tracking number (crm/shipments/keys.py), so this is
    also the guard that one tracking number is one shipment, and the lookup by tracking
    number is one GetItem (no scan, no index)."""

    KIND = Kind("shipment pointer and tracking-number guard", "P SHP#<shipment id>", "S", "customer")

    customer_id = UnicodeAttribute()
    order_id = UnicodeAttribute()


class RecentShipmentsItem(Item, discriminator="recent_shipments"):
    """``T#<tenant>#C#<customer>`` / ``PARCELS``: the customer's 5 latest shipments in
    brief. It sorts between ``ORDERS`` and ``PROFILE``, inside the 360 range, so the 360
    Query reads it for free."""

    KIND = Kind("latest shipments (5, in brief)", "P C#<id>", "PARCELS", "customer", merge="recompute")

    customer_id = UnicodeAttribute()
    recent = JSONAttribute(default=list)
    version = VersionAttribute()


# --- outbound webhooks (crm/webhooks; docs/webhooks.md) ----------------------------------


class WebhookEndpointItem(Item, discriminator="webhook_endpoint"):
    """``T#<tenant>#WEBHOOKS`` / ``<endpoint id>``: where the tenant's events are sent
    (crm/webhooks/endpoints.py): URL, event type patterns, state, and its signing secrets
    sealed with KMS (the current one and those still overlapping after a rotation). One
    partition per tenant, at most ``endpoints.MAX_ENDPOINTS`` items: the delivery engine
    reads the enabled ones with one consistent Query. The engine's bookkeeping
    (``failing_since``, ``healthy_at``, a disable) are UpdateItems that bump ``version``."""

    KIND = Kind(
        "outbound webhook endpoint (URL, event types, state, KMS-sealed signing secrets)",
        "P WEBHOOKS",
        "<endpoint id>",
        "tenant",
        events=True,
    )

    endpoint_id = UnicodeAttribute()
    url = UnicodeAttribute()
    types = ListAttribute(of=UnicodeAttribute)
    description = UnicodeAttribute(null=True)
    enabled = BooleanAttribute(default=True)
    ordered = BooleanAttribute(default=False)
    disabled_reason = UnicodeAttribute(null=True)  # manual | gone_410 | failing_5_days
    failing_since = UnicodeAttribute(null=True)  # the first failure of the current streak
    healthy_at = UnicodeAttribute(null=True)  # the last mark_healthy: an older failure is stale
    # {"format": "kms", "blob"} of {"current": "whsec_…", "previous": [{"secret", "expires_at"}]}
    sealed = JSONAttribute(default=dict)
    overlap_until = UnicodeAttribute(null=True)  # when the last overlapping old secret stops signing
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()


# --- on-premise agents (crm/agents; docs/api.md "Agents") --------------------------------


class AgentItem(Item, discriminator="agent"):
    """``T#<tenant>#AGENTS`` / ``<agent id>``: an on-premise agent (crm/agents/registry.py):
    its name, the source of its external ids, its current key, its last heartbeat and how
    far its uploads are acknowledged (``acked_seq``, which only moves forward, by a
    condition). One partition per tenant, at most ``registry.MAX_AGENTS``: the list is one
    Query."""

    KIND = Kind(
        "on-premise agent (name, source, key id, last heartbeat, acked upload seq, counts)",
        "P AGENTS",
        "<agent id>",
        "tenant",
    )

    agent_id = UnicodeAttribute()
    name = UnicodeAttribute()
    source = UnicodeAttribute()
    status = UnicodeAttribute(default="active")  # active | revoked
    key_id = UnicodeAttribute()
    key_prefix = UnicodeAttribute()
    created_at = UnicodeAttribute()
    revoked_at = UnicodeAttribute(null=True)
    # the last heartbeat: what the agent says of itself
    last_seen_at = UnicodeAttribute(null=True)
    agent_version = UnicodeAttribute(null=True)
    queued = NumberAttribute(null=True)
    parked = NumberAttribute(null=True)
    lag_seconds = NumberAttribute(null=True)
    last_sync_at = UnicodeAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    # what the server did with its uploads
    acked_seq = NumberAttribute(default=0)
    rejected = NumberAttribute(default=0)
    conflicts = NumberAttribute(default=0)


class AgentSourceItem(Item, discriminator="agent_source"):
    """``T#<tenant>#AGENTS`` / ``SRC#<source>``: at most one agent per source (written in
    the agent's creating transaction, kept while the agent exists)."""

    KIND = Kind("agent source guard (one agent per source)", "P AGENTS", "SRC#<source>", "tenant")

    agent_id = UnicodeAttribute()


class AgentParkedItem(Item, discriminator="agent_parked"):
    """``T#<tenant>#AGT#<agent id>`` / ``PARK#<seq>``: an uploaded record the server refused
    (crm/agents/parked.py), with the reason, kept 30 days. It holds the record's seq, kind,
    local key and the reasons, never the record's values."""

    KIND = Kind(
        "agent's parked (rejected) upload record: reason only, TTL 30 days",
        "P AGT#<agent id>",
        "PARK#<seq>",
        "tenant",
        gsi="— (expires by TTL)",
    )

    seq = NumberAttribute()
    record_kind = UnicodeAttribute()
    external_id = UnicodeAttribute(null=True)
    reason = UnicodeAttribute()
    errors = JSONAttribute(default=list)
    parked_at = UnicodeAttribute()


class AgentConflictItem(Item, discriminator="agent_conflict"):
    """``T#<tenant>#AGT#<agent id>`` / ``CFL#<seq>#<field>``: a field both sides changed and
    how its rule resolved it (crm/agents/conflicts.py), kept 90 days. Both values are the
    customer's data: listed on gsi1 ``P AGTCFL#<customer id>`` so an erasure finds and
    deletes them with one Query."""

    KIND = Kind(
        "agent sync conflict (both values, winner, rule), TTL 90 days",
        "P AGT#<agent id>",
        "CFL#<seq>#<field>",
        "tenant",
        pii=("local_value", "cloud_value", "external_id"),
        erasure="delete",
        gsi="gsi1 `P AGTCFL#<customer id>` / `<resolved_at>#<id>` (erasure)",
    )

    conflict_id = UnicodeAttribute()
    agent_id = UnicodeAttribute()
    seq = NumberAttribute()
    customer_id = UnicodeAttribute(null=True)
    external_id = UnicodeAttribute(null=True)
    field = UnicodeAttribute()
    local_value = JSONAttribute(null=True)
    cloud_value = JSONAttribute(null=True)
    winner = UnicodeAttribute()
    rule = UnicodeAttribute()
    local_hlc = UnicodeAttribute()
    cloud_hlc = UnicodeAttribute()
    resolved_at = UnicodeAttribute()
