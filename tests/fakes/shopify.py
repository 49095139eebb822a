"""A fake Shopify Admin REST API (2024-04) replaying Shopify's own fixtures.

Every generated customer or order is a deep copy of ``shopify/python_api_customer.json`` /
``python_api_order.json`` (shopify_python_api's test fixtures) with the id, email, names,
created_at/updated_at and amounts varied; every other field is the fixture's. Behaviour:

- ``X-Shopify-Access-Token`` required (401 otherwise, with Shopify's error body);
- ``GET /admin/api/<version>/shop.json``, ``customers.json``, ``orders.json`` and their
  ``count.json``;
- listings ordered by id; ``limit`` (default 50, at most 250), ``updated_at_min`` (inclusive),
  orders' ``status`` (default ``open``: neither closed nor cancelled; ``any``);
- cursor pagination: ``page_info`` is an opaque token carrying the last id and the filters;
  with it any parameter other than ``limit`` is refused (400), like Shopify; ``Link`` has
  ``rel="next"`` and ``rel="previous"`` URLs;
- fault injection, ``max_page_size``, counters and the request log from
  :class:`tests.fakes.FakeVendor` (401/403 answer Shopify's error bodies), records and
  vendor-side writes from :class:`tests.fakes.FakeShop`;
- webhooks: :meth:`FakeShopify.delivery` signs a delivery of a record as Shopify does
  (``forged_delivery`` with another secret); sending the same headers and body again is
  a replay (Shopify's retries keep ``X-Shopify-Webhook-Id``).
"""
from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterator

from tests.fakes import FakeShop, Rec, Reply, epoch, fixture

BASE_TIME = "2024-03-01T00:00:00Z"
CUSTOMER_ID0 = 207119551  # the fixture's ids: generated ones count up from them
ORDER_ID0 = 450789469
EST = timezone(timedelta(hours=-4))  # the fixtures' offsets
EST5 = timezone(timedelta(hours=-5))


def shopify_time(seconds: int, tz: timezone = EST) -> str:
    return datetime.fromtimestamp(seconds, tz).isoformat()


class FakeShopify(FakeShop):
    first_ids = {"customers": CUSTOMER_ID0, "orders": ORDER_ID0}

    def __init__(self, token: str = "shpat_test_token", *, version: str = "2024-04",
                 base_time: str = BASE_TIME) -> None:
        super().__init__(base_time)
        self.token, self.version = token, version
        self._customer_tpl = json.dumps(fixture("shopify", "python_api_customer.json")["customer"])
        self._order_tpl = json.dumps(fixture("shopify", "python_api_order.json")["order"])

    # rendering ------------------------------------------------------------------------
    def _customer(self, rec: Rec) -> dict[str, Any]:
        c = json.loads(self._customer_tpl)
        first, last, email = self._person(rec.n)
        c.update(id=rec.id, email=email, first_name=first, last_name=last,
                 created_at=shopify_time(rec.created), updated_at=shopify_time(rec.updated),
                 orders_count=rec.n % 7, total_spent=f"{(rec.n % 7) * 41.94:.2f}")
        c["default_address"]["id"] = rec.id
        for a in c.get("addresses") or []:
            a["id"] = rec.id
        if rec.override:
            c.update(rec.override)
        return c

    def _order(self, rec: Rec) -> dict[str, Any]:
        o = json.loads(self._order_tpl)
        price = Decimal(10 + rec.n % 90) + Decimal("0.99")
        items = Decimal(2) * price  # the fixture's shape: total_line_items_price is 2 of 3 lines
        tax = (items * Decimal("0.06")).quantize(Decimal("0.01"))
        o.update(id=rec.id, name=f"#{1001 + rec.n}", number=1 + rec.n, order_number=1001 + rec.n,
                 checkout_id=rec.id, created_at=shopify_time(rec.created, EST5),
                 updated_at=shopify_time(rec.updated, EST5), subtotal_price=f"{items:.2f}",
                 total_line_items_price=f"{items:.2f}", total_tax=f"{tax:.2f}",
                 total_price=f"{items + tax:.2f}", total_price_usd=f"{items + tax:.2f}",
                 token=uuid.UUID(int=rec.id).hex)
        for li in o["line_items"]:
            li["price"] = f"{price:.2f}"
        o["tax_lines"][0]["price"] = f"{tax:.2f}"
        if rec.buyer is not None:
            buyer = self.customers[rec.buyer]
            first, last, email = self._person(buyer.n)
            o["email"] = email
            # the buyer embedded in an order is that customer, times included (Shopify's is)
            o["customer"].update(id=buyer.id, email=email, first_name=first, last_name=last,
                                 created_at=shopify_time(buyer.created), updated_at=shopify_time(buyer.updated))
            o["billing_address"].update(first_name=first, last_name=last, name=f"{first} {last}")
        if rec.override:
            o.update(rec.override)
        return o

    # HTTP -------------------------------------------------------------------------------
    def throttle_reply(self, retry_after: str) -> Reply:
        return Reply(429, {"errors": "Exceeded 2 calls per second for api client. Reduce request "
                                     "rates to resume uninterrupted service."},
                     {"Retry-After": retry_after})

    def error_body(self, status: int) -> Any:
        if status == 401:
            return {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
        if status == 403:
            return {"errors": "[API] This action requires merchant approval for read_customers scope."}
        return super().error_body(status)

    def route(self, method: str, path: str, query: dict[str, str], headers: Any) -> Reply:
        prefix = f"/admin/api/{self.version}/"
        if not path.startswith(prefix):
            return Reply(404, {"errors": "Not Found"})
        if headers.get("X-Shopify-Access-Token") != self.token:
            return Reply(401, {"errors": "[API] Invalid API key or access token (unrecognized login "
                                         "or wrong password)"})
        resource = path[len(prefix):]
        if method == "GET" and resource == "shop.json":
            return Reply(200, {"shop": {"id": 690933842, "name": "Fake Shop", "currency": "USD",
                                        "myshopify_domain": "fake.myshopify.com"}})
        if method == "GET" and resource in ("customers.json", "orders.json"):
            return self._list(resource[:-5], query)
        if method == "GET" and resource in ("customers/count.json", "orders/count.json"):
            return self._count(resource.split("/")[0], query)
        kind, _, leaf = resource.partition("/")
        if method == "GET" and kind in ("customers", "orders") and leaf[:-5].isdigit() and leaf.endswith(".json"):
            with self.lock:  # one record by id, as the webhook re-read asks
                rec = getattr(self, kind).get(int(leaf[:-5]))
                return Reply(200, {kind[:-1]: self.render(kind, rec)}) if rec else Reply(404, {"errors": "Not Found"})
        return Reply(404, {"errors": "Not Found"})

    def _count(self, kind: str, query: dict[str, str]) -> Reply:
        """``GET <kind>/count.json``: how many match ``updated_at_min`` (and orders' status)."""
        since = epoch(query["updated_at_min"]) if query.get("updated_at_min") else None
        status = query.get("status", "open") if kind == "orders" else None
        with self.lock:
            table = getattr(self, kind)
            n = sum(1 for rec in table.values()
                    if (since is None or rec.updated >= since)
                    and (status in (None, "any") or (status == "open" and not (rec.override or {}).get("closed_at")
                                                      and not (rec.override or {}).get("cancelled_at"))))
        return Reply(200, {"count": n})

    def _token(self, payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _untoken(self, token: str) -> dict[str, Any]:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))

    def _list(self, kind: str, query: dict[str, str]) -> Reply:
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 250:
            return Reply(400, {"errors": {"limit": "Limit must be between 1 and 250"}})
        if "page_info" in query:
            extra = sorted(set(query) - {"page_info", "limit"})
            if extra:
                return Reply(400, {"errors": {"page_info": f"page_info cannot be combined with {extra}"}})
            try:
                cursor = self._untoken(query["page_info"])
                assert cursor["k"] == kind
            except Exception:
                return Reply(400, {"errors": {"page_info": "Invalid value."}})
            since, status = cursor.get("min"), cursor.get("st")
        else:
            cursor = {}
            since = None
            if query.get("updated_at_min"):
                try:
                    since = epoch(query["updated_at_min"])
                except ValueError:
                    return Reply(400, {"errors": {"updated_at_min": "Invalid date"}})
            status = query.get("status", "open") if kind == "orders" else None
        with self.lock:
            table, ids = getattr(self, kind), self._ids[kind]

            def match(i: int) -> bool:
                rec = table[i]
                if since is not None and rec.updated < since:
                    return False
                if status in (None, "any"):
                    return True
                o = rec.override or {}  # the fixture is open: only an update closes or cancels
                if status == "open":
                    return o.get("closed_at") is None and o.get("cancelled_at") is None
                if status == "closed":
                    return o.get("closed_at") is not None
                if status == "cancelled":
                    return o.get("cancelled_at") is not None
                return False

            size = self.page_size(limit)
            if cursor.get("dir") == "prev":
                before = bisect.bisect_left(ids, cursor["id"])
                picked = list(_take(match, reversed(ids[:before]), size))[::-1]
            else:
                after = bisect.bisect_right(ids, cursor.get("id", -1))
                picked = list(_take(match, iter(ids[after:]), size))
            page = [self.render(kind, table[i]) for i in picked]
            more_after = bool(picked) and next(_take(match, iter(ids[bisect.bisect_right(ids, picked[-1]):]), 1), None) is not None
            more_before = bool(picked) and next(_take(match, reversed(ids[:bisect.bisect_left(ids, picked[0])]), 1), None) is not None
        links = []
        base = f"{self.url}/admin/api/{self.version}/{kind}.json?limit={limit}&page_info="
        common = {"k": kind, "min": since, "st": status}
        if more_before:
            links.append(f'<{base}{self._token({**common, "dir": "prev", "id": picked[0]})}>; rel="previous"')
        if more_after:
            links.append(f'<{base}{self._token({**common, "dir": "next", "id": picked[-1]})}>; rel="next"')
        headers = {"X-Shopify-Shop-Api-Call-Limit": "1/40"}
        if links:
            headers["Link"] = ", ".join(links)
        return Reply(200, {kind: page}, headers)

    # webhooks ---------------------------------------------------------------------------
    TOPICS = {"customers": "customers/update", "orders": "orders/updated"}

    def delivery(self, kind: str, id: int, secret: str, *, webhook_id: str | None = None) -> tuple[dict[str, str], bytes]:
        """A delivery of record ``id`` of ``kind`` as it is now, signed with ``secret`` (a
        fresh ``X-Shopify-Webhook-Id`` unless given). Send it twice to replay it."""
        with self.lock:
            payload = self.render(kind, getattr(self, kind)[id])
        return self.webhook(self.TOPICS[kind], payload, secret, webhook_id=webhook_id)

    def forged_delivery(self, kind: str, id: int) -> tuple[dict[str, str], bytes]:
        """The same delivery signed with a secret that is not the shop's."""
        return self.delivery(kind, id, "forged-" + uuid.uuid4().hex)

    @staticmethod
    def webhook(topic: str, payload: Any, secret: str, *, webhook_id: str | None = None,
                shop: str = "fake.myshopify.com") -> tuple[dict[str, str], bytes]:
        """Headers and raw body of a delivery, signed the way Shopify signs it."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        return ({"X-Shopify-Topic": topic, "X-Shopify-Hmac-Sha256": signature,
                 "X-Shopify-Shop-Domain": shop, "X-Shopify-API-Version": "2024-04",
                 "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
                 "Content-Type": "application/json"}, body)


def _take(match: Callable[[int], bool], ids: Iterator[int], limit: int) -> Iterator[int]:
    n = 0
    for i in ids:
        if n >= limit:
            return
        if match(i):
            n += 1
            yield i
