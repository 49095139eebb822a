"""The demo tenant: ~50 realistic customers with consent, tags and timelines.

Deterministic (a seeded RNG), written through the same services the API uses.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

GIVEN = ["Ava", "Liam", "Noah", "Emma", "Olivia", "Mateo", "Sofia", "Lucas", "Mia", "Elijah",
         "Amara", "Kenji", "Priya", "Omar", "Chloé", "Jonas", "Aisha", "Diego", "Hana", "Finn",
         "Zoe", "Ravi", "Ingrid", "Tomás", "Leila"]
FAMILY = ["Garcia", "Nguyen", "Smith", "Okafor", "Müller", "Rossi", "Kowalski", "Tanaka",
          "Haddad", "Silva", "Johansson", "Patel", "Dubois", "Kim", "O'Brien", "Novak"]
CITIES = [("Portland", "OR", "US", "+1503555"), ("Austin", "TX", "US", "+1512555"),
          ("Toronto", "ON", "CA", "+1416555"), ("Manchester", None, "GB", "+44161496"),
          ("Berlin", None, "DE", "+4930901"), ("Lyon", None, "FR", "+33472")]
TAGS = ["vip", "wholesale", "newsletter", "returning", "gift-buyer", "local-pickup"]
PRODUCTS = [("TEE-ORG", "Organic tee", "apparel", 2900), ("HOOD-GRY", "Grey hoodie", "apparel", 6900),
            ("MUG-STN", "Stoneware mug", "home", 1800), ("TOTE-CNV", "Canvas tote", "bags", 2400),
            ("SNK-WHT", "White sneakers", "shoes", 11900), ("CAP-NVY", "Navy cap", "accessories", 2200)]
CHANNELS = ["web", "web", "mobile", "store", "marketplace", "tv"]
EVENTS = [("email.opened", "email", "Opened “Autumn collection”"),
          ("email.clicked", "email", "Clicked the lookbook link"),
          ("store.visit", "store", "Visited the downtown store"),
          ("call.logged", "phone", "Asked about a delivery date"),
          ("web.session", "web", "Browsed 6 products"),
          ("case.opened", "web", "Reported a damaged parcel"),
          ("review.posted", "web", "Left a 5-star review")]


def demo_records(n: int = 50, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        given, family = rng.choice(GIVEN), rng.choice(FAMILY)
        city, region, country, prefix = rng.choice(CITIES)
        local = f"{given}.{family}".lower().replace("'", "").replace("é", "e").replace("á", "a") \
            .replace("ü", "u")
        record = {
            "name": {"given": given, "family": family},
            "email": f"{local}{i}@example.com",
            "phone": f"{prefix}{rng.randint(0, 9999):04d}" if country in ("US", "CA") else None,
            "locale": {"US": "en-US", "CA": "en-CA", "GB": "en-GB", "DE": "de-DE", "FR": "fr-FR"}[country],
            "tags": rng.sample(TAGS, rng.randint(0, 3)),
            "addresses": [{"label": "home", "line1": f"{rng.randint(1, 999)} Market St",
                           "city": city, "region": region, "country": country}],
            "consent": {"email": {"status": rng.choice(["granted", "granted", "denied"]),
                                  "source": "checkout"}},
            "attributes": {"favourite_category": rng.choice(["shoes", "bags", "outerwear"]),
                           "newsletter_issues_read": rng.randint(0, 40)},
            "external_ids": {"shopify": str(7_000_000_000 + i)} if i % 2 == 0 else {},
            "birth_date": f"{rng.randint(1960, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        }
        record = {k: v for k, v in record.items() if v not in (None, {}, [])}
        records.append(record)
    return records


def seed_demo(name: str = "Demo Shop", customers: int = 50) -> tuple[str, str]:
    """Create the demo tenant and its data; return (tenant id, admin API key)."""
    from crm import apikeys, tenants
    from crm.context import TenantContext
    from crm.customers import batch, service
    from crm.customers.schemas import TimelineEventCreate
    from crm.storage import EventItem

    tenant = tenants.create(name)
    ctx = TenantContext(tenant.id)
    key = apikeys.create(ctx, "demo admin", ["admin"])
    rng = random.Random(11)
    now = datetime.now(timezone.utc)
    records = _birthdays_this_week(demo_records(customers), now)
    results = []
    for start in range(0, customers, 100):
        results += batch.upsert(ctx, records[start:start + 100])
    # The customers were just created, so their timelines go in as plain batch writes
    # (25 items a request) rather than one conditional transaction per entry.
    with EventItem.batch_write() as writer:
        for result in results:
            for _ in range(rng.randint(1, 6) if result.id else 0):
                kind, channel, summary = rng.choice(EVENTS)
                when = now - timedelta(days=rng.randint(0, 180), minutes=rng.randint(0, 1440))
                writer.save(service.event_item(ctx, result.id, TimelineEventCreate(
                    type=kind, channel=channel, summary=summary, occurred_at=when)))
    _seed_program(ctx)
    _seed_orders(ctx, [r.id for r in results if r.id], rng, now)
    _seed_segments(ctx)
    _seed_account(ctx, [r.id for r in results if r.id][:2], now)
    return tenant.id, key.secret


def _seed_account(ctx, contacts: list[str], now: datetime) -> None:
    """A B2B account as an ERP sync leaves it (docs/accounts.md): two of the demo
    customers as its contacts, an open and a paid invoice, so its balance shows."""
    from connectors import sink
    from connectors.sdk.base import InvoiceRecord, OrderLine
    from crm.accounts import contacts as account_contacts
    from crm.accounts import service as accounts
    from crm.accounts.schemas import AccountCreate

    account = accounts.create(ctx, AccountCreate(
        name="Acme Café GmbH", tax_id="DE123456789", payment_terms="Net 30", credit_limit=500000,
        currency="EUR", email="ap@acme.example", external_ids={"erpnext": "CUST-0001"}))
    for customer_id, role in zip(contacts, ("Purchasing", "Accounts Payable"), strict=False):
        account_contacts.link(ctx, account.id, customer_id, role)
    at = (now - timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [OrderLine("COFFEE-5KG", "Espresso beans, 5 kg", 4, 6250)]
    sink.write(ctx, "erpnext", "sales_invoices", [
        InvoiceRecord("ACC-SINV-0001", at, "ACC-SINV-0001", "EUR", at, 29750, 29750, account="CUST-0001",
                      lines=lines, tax=4750, payment_terms="Net 30",
                      due_at=(now + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")),
        InvoiceRecord("ACC-SINV-0000", at, "ACC-SINV-0000", "EUR", at, 29750, 0, status="paid",
                      account="CUST-0001", lines=lines, tax=4750, paid_at=at)])


def _birthdays_this_week(records: list[dict], now: datetime) -> list[dict]:
    """Every ninth customer's birthday falls in the coming week (relative to today, so the
    demo's "Birthday this week" segment is never empty)."""
    for n, record in enumerate(records[::9]):
        day = (now + timedelta(days=n % 7)).date()
        if (day.month, day.day) == (2, 29):
            day -= timedelta(days=1)
        record["birth_date"] = f"{1975 + n}-{day.month:02d}-{day.day:02d}"
    return records


DEMO_SEGMENTS = [
    ("VIPs", "the top 20 % by lifetime value", {"all": [{"field": "vip", "op": "=", "value": True}]}),
    ("At risk", "used to buy often, not lately (RFM)",
     {"all": [{"field": "rfm.segment", "op": "in", "value": ["At risk", "Can't lose them"]}]}),
    ("Birthday this week", "email consent, birthday in the next 7 days",
     {"all": [{"field": "birth_date", "op": "birthday_within", "value": 7},
              {"field": "consent.email", "op": "=", "value": "granted"}]}),
    ("Lapsed big spenders", "spent $250 or more, no order in 90 days",
     {"all": [{"field": "orders.net_spend", "op": ">=", "value": 25000},
              {"field": "orders.last_at", "op": "older_than", "value": "P90D"}]}),
]


def _seed_segments(ctx) -> None:
    """Built in the background once the stack's pollers run, like any new segment."""
    from crm.segments import service
    from crm.segments.schemas import SegmentCreate

    for name, description, rule in DEMO_SEGMENTS:
        service.create(ctx, SegmentCreate(name=name, description=description, rule=rule))


DEMO_PROGRAM = {
    "earns_from": "2000-01-01T00:00:00Z",  # the demo's backdated history earns
    "currency": "USD", "earn_rates": {"USD": 1}, "rounding": "floor",
    "channel_multipliers": {"mobile": 2}, "category_multipliers": {"shoes": 1.5},
    "first_order_bonus": 100, "birthday_multiplier": 2, "tier_basis": "spend",
    "tiers": [{"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 25000, "multiplier": 1.25},
              {"name": "Gold", "threshold": 75000, "multiplier": 1.5}],
    "return_window_days": 14, "expiry_months": 12, "expiring_notice_days": 14,
}


def _seed_program(ctx) -> None:
    """1 point per dollar, double on mobile, tiers by 12-month spend. The points are
    earned by the event handlers, exactly as for orders that come in through the API."""
    from crm.loyalty import service
    from crm.loyalty.schemas import ProgramFields

    service.put_program(ctx, ProgramFields(**DEMO_PROGRAM), None)


def _seed_orders(ctx, customer_ids: list[str], rng: random.Random, now: datetime) -> None:
    """1-4 orders for most customers, through the order service, in every state."""
    from crm.orders import service as orders
    from crm.orders.schemas import OrderCreate, PaymentCreate, RefundCreate

    n = 0
    for cid in customer_ids:
        placed = sorted(now - timedelta(days=rng.randint(1, 300), minutes=rng.randint(0, 1440))
                        for _ in range(rng.choice([0, 1, 1, 2, 3, 4])))
        for placed_at in placed:  # oldest first, as they happened
            n += 1
            lines = [{"sku": sku, "name": name, "category": cat, "quantity": rng.randint(1, 3),
                      "unit_price": price} for sku, name, cat, price in rng.sample(PRODUCTS, rng.randint(1, 3))]
            subtotal = sum(line["quantity"] * line["unit_price"] for line in lines)
            shipping = 0 if subtotal > 5000 else 495
            order, _ = orders.create(ctx, OrderCreate.model_validate({
                "customer": {"id": cid}, "source": "demo", "external_id": f"D{1000 + n}",
                "channel": rng.choice(CHANNELS), "currency": "USD", "lines": lines,
                "shipping": shipping, "total": subtotal + shipping,
                "placed_at": placed_at.isoformat()}))
            fate = rng.random()
            if fate < 0.8:
                orders.pay(ctx, order.id, PaymentCreate(paid_at=placed_at + timedelta(minutes=30)))
            if 0.3 < fate < 0.8:
                orders.fulfill(ctx, order.id, orders.FulfilmentCreate())
            if 0.7 < fate < 0.8:
                orders.refund(ctx, order.id, RefundCreate(amount=lines[0]["unit_price"], reason="returned"))
