"""A fake WooCommerce REST API v3 (``/wp-json/wc/v3``) replaying WooCommerce's documented payloads.

Customers are deep copies of ``woocommerce/v3_customer_create_response.json`` (the REST
API docs' example) with id, names, email, username and dates varied. No order fixture was
published with the repository's fixtures, so orders come from :func:`order_payload`, a
builder over the JSON response examples of the official docs, "List all orders":
https://woocommerce.github.io/woocommerce-rest-api-docs/#list-all-orders
(woocommerce/woocommerce-rest-api-docs, source/includes/wp-api-v3/_orders.md, commit
08fc1d74; Apache-2.0): order 727 (a guest's, processing, with tax) and order 723 (customer
26's, completed, two refunds), copied field for field.

Behaviour: HTTP Basic auth with the consumer key/secret (or ``consumer_key`` and
``consumer_secret`` query parameters) else 401 with WooCommerce's error body; ``page``,
``per_page`` (default 10, at most 100, else 400 ``rest_invalid_param``); ``X-WP-Total``,
``X-WP-TotalPages`` and a ``Link`` header; customers: ``orderby`` id|name|registered_date
(default name) and no date filter at all (like WooCommerce: unknown parameters are
ignored); orders: ``orderby`` date|id|modified (default date), ``order`` (default desc),
``status`` (default any), ``modified_after`` inclusive, read in the site's time zone
(UTC-3, like the examples) unless ``dates_are_gmt=true``. Fault injection (401/403 with
WooCommerce's error bodies), ``max_page_size`` (``X-WP-TotalPages`` and the links follow
it), counters and the request log come from :class:`tests.fakes.FakeVendor`, records and
vendor-side writes from :class:`tests.fakes.FakeShop`. Webhooks: :meth:`FakeWooCommerce.delivery`
signs a delivery of a record as WooCommerce does (``forged_delivery`` with another secret);
the same headers and body sent again are a replay (same ``X-WC-Webhook-Delivery-ID``).
"""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import math
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from tests.fakes import FakeShop, Rec, Reply, fixture

SITE_TZ = timezone(timedelta(hours=-3))  # the docs' examples: date_created 16:09, _gmt 19:09
BASE_TIME = "2024-03-01T00:00:00Z"

_ADDRESS_723 = {"first_name": "João", "last_name": "Silva", "company": "", "address_1": "Av. Brasil, 432",
                "address_2": "", "city": "Rio de Janeiro", "state": "RJ", "postcode": "12345-000", "country": "BR"}
_ADDRESS_727 = {"first_name": "John", "last_name": "Doe", "company": "", "address_1": "969 Market",
                "address_2": "", "city": "San Francisco", "state": "CA", "postcode": "94103", "country": "US"}

# The docs' "List all orders" response, verbatim but for the _links (kept) and the
# cosmetic key order.
DOC_ORDER_727: dict[str, Any] = {
    "id": 727, "parent_id": 0, "number": "727", "order_key": "wc_order_58d2d042d1d",
    "created_via": "rest-api", "version": "3.0.0", "status": "processing", "currency": "USD",
    "date_created": "2017-03-22T16:28:02", "date_created_gmt": "2017-03-22T19:28:02",
    "date_modified": "2017-03-22T16:28:08", "date_modified_gmt": "2017-03-22T19:28:08",
    "discount_total": "0.00", "discount_tax": "0.00", "shipping_total": "10.00", "shipping_tax": "0.00",
    "cart_tax": "1.35", "total": "29.35", "total_tax": "1.35", "prices_include_tax": False,
    "customer_id": 0, "customer_ip_address": "", "customer_user_agent": "", "customer_note": "",
    "billing": {**_ADDRESS_727, "email": "john.doe@example.com", "phone": "(555) 555-5555"},
    "shipping": dict(_ADDRESS_727),
    "payment_method": "bacs", "payment_method_title": "Direct Bank Transfer", "transaction_id": "",
    "date_paid": "2017-03-22T16:28:08", "date_paid_gmt": "2017-03-22T19:28:08",
    "date_completed": None, "date_completed_gmt": None, "cart_hash": "",
    "meta_data": [{"id": 13106, "key": "_download_permissions_granted", "value": "yes"},
                  {"id": 13109, "key": "_order_stock_reduced", "value": "yes"}],
    "line_items": [
        {"id": 315, "name": "Woo Single #1", "product_id": 93, "variation_id": 0, "quantity": 2,
         "tax_class": "", "subtotal": "6.00", "subtotal_tax": "0.45", "total": "6.00", "total_tax": "0.45",
         "taxes": [{"id": 75, "total": "0.45", "subtotal": "0.45"}], "meta_data": [], "sku": "", "price": 3},
        {"id": 316, "name": "Ship Your Idea &ndash; Color: Black, Size: M Test", "product_id": 22,
         "variation_id": 23, "quantity": 1, "tax_class": "", "subtotal": "12.00", "subtotal_tax": "0.90",
         "total": "12.00", "total_tax": "0.90", "taxes": [{"id": 75, "total": "0.9", "subtotal": "0.9"}],
         "meta_data": [{"id": 2095, "key": "pa_color", "value": "black"},
                       {"id": 2096, "key": "size", "value": "M Test"}], "sku": "Bar3", "price": 12}],
    "tax_lines": [{"id": 318, "rate_code": "US-CA-STATE TAX", "rate_id": 75, "label": "State Tax",
                   "compound": False, "tax_total": "1.35", "shipping_tax_total": "0.00", "meta_data": []}],
    "shipping_lines": [{"id": 317, "method_title": "Flat Rate", "method_id": "flat_rate", "total": "10.00",
                        "total_tax": "0.00", "taxes": [], "meta_data": []}],
    "fee_lines": [], "coupon_lines": [], "refunds": [],
    "_links": {"self": [{"href": "https://example.com/wp-json/wc/v3/orders/727"}],
               "collection": [{"href": "https://example.com/wp-json/wc/v3/orders"}]},
}
DOC_ORDER_723: dict[str, Any] = {
    "id": 723, "parent_id": 0, "number": "723", "order_key": "wc_order_58d17c18352",
    "created_via": "checkout", "version": "3.0.0", "status": "completed", "currency": "USD",
    "date_created": "2017-03-21T16:16:00", "date_created_gmt": "2017-03-21T19:16:00",
    "date_modified": "2017-03-21T16:54:51", "date_modified_gmt": "2017-03-21T19:54:51",
    "discount_total": "0.00", "discount_tax": "0.00", "shipping_total": "10.00", "shipping_tax": "0.00",
    "cart_tax": "0.00", "total": "39.00", "total_tax": "0.00", "prices_include_tax": False,
    "customer_id": 26, "customer_ip_address": "127.0.0.1",
    "customer_user_agent": "mozilla/5.0 (x11; ubuntu; linux x86_64; rv:52.0) gecko/20100101 firefox/52.0",
    "customer_note": "",
    "billing": {**_ADDRESS_723, "email": "joao.silva@example.com", "phone": "(11) 1111-1111"},
    "shipping": dict(_ADDRESS_723),
    "payment_method": "bacs", "payment_method_title": "Direct bank transfer", "transaction_id": "",
    "date_paid": None, "date_paid_gmt": None,
    "date_completed": "2017-03-21T16:54:51", "date_completed_gmt": "2017-03-21T19:54:51",
    "cart_hash": "5040ce7273261e31d8bcf79f9be3d279",
    "meta_data": [{"id": 13023, "key": "_download_permissions_granted", "value": "yes"}],
    "line_items": [
        {"id": 311, "name": "Woo Album #2", "product_id": 87, "variation_id": 0, "quantity": 1,
         "tax_class": "", "subtotal": "9.00", "subtotal_tax": "0.00", "total": "9.00", "total_tax": "0.00",
         "taxes": [], "meta_data": [], "sku": "", "price": 9},
        {"id": 313, "name": "Woo Ninja", "product_id": 34, "variation_id": 0, "quantity": 1,
         "tax_class": "", "subtotal": "20.00", "subtotal_tax": "0.00", "total": "20.00", "total_tax": "0.00",
         "taxes": [], "meta_data": [], "sku": "", "price": 20}],
    "tax_lines": [],
    "shipping_lines": [{"id": 312, "method_title": "Flat rate", "method_id": "flat_rate:25", "total": "10.00",
                        "total_tax": "0.00", "taxes": [],
                        "meta_data": [{"id": 2057, "key": "Items", "value": "Woo Album #2 &times; 1"}]}],
    "fee_lines": [], "coupon_lines": [],
    "refunds": [{"id": 726, "refund": "", "total": "-10.00"}, {"id": 724, "refund": "", "total": "-9.00"}],
    "_links": {"self": [{"href": "https://example.com/wp-json/wc/v3/orders/723"}],
               "collection": [{"href": "https://example.com/wp-json/wc/v3/orders"}],
               "customer": [{"href": "https://example.com/wp-json/wc/v3/customers/26"}]},
}


def order_payload(example: int = 723, **changes: Any) -> dict[str, Any]:
    """A deep copy of the docs' order ``example`` (723 or 727) with top-level ``changes``."""
    base = {723: DOC_ORDER_723, 727: DOC_ORDER_727}[example]
    return {**copy.deepcopy(base), **copy.deepcopy(changes)}


def woo_times(seconds: int) -> tuple[str, str]:
    """(site-local, GMT) as WooCommerce writes them: no offset, whole seconds."""
    gmt = datetime.fromtimestamp(seconds, timezone.utc)
    fmt = "%Y-%m-%dT%H:%M:%S"
    return gmt.astimezone(SITE_TZ).strftime(fmt), gmt.strftime(fmt)


class FakeWooCommerce(FakeShop):
    first_ids = {"customers": 25, "orders": 727}
    no_buyer = 0  # a guest
    updated_field = "date_modified_gmt"

    def __init__(self, key: str = "ck_test_key", secret: str = "cs_test_secret", *,
                 base_time: str = BASE_TIME, guest_every: int = 4) -> None:
        super().__init__(base_time)
        self.key, self.secret = key, secret
        self.guest_every = guest_every
        self._customer_tpl = json.dumps(fixture("woocommerce", "v3_customer_create_response.json"))
        self._order_tpl = json.dumps(DOC_ORDER_723)
        self._guest_tpl = json.dumps(DOC_ORDER_727)

    # vendor-side data ------------------------------------------------------------------
    def _seed_buyer(self, kind: str, i: int) -> int | None:
        """Every ``guest_every``-th seeded order is a guest's."""
        if self.guest_every and not i % self.guest_every:
            return self.no_buyer
        return self._buyer(kind, i)

    def delete(self, kind: str, id: int) -> None:
        with self.lock:
            del getattr(self, kind)[id]
            self._ids[kind].remove(id)

    # rendering -------------------------------------------------------------------------
    def _customer(self, rec: Rec) -> dict[str, Any]:
        c = json.loads(self._customer_tpl)
        first, last, email = self._person(rec.n)
        created, created_gmt = woo_times(rec.created)
        modified, modified_gmt = woo_times(rec.updated)
        c.update(id=rec.id, email=email, first_name=first, last_name=last,
                 username=email.split("@")[0], date_created=created, date_created_gmt=created_gmt,
                 date_modified=modified, date_modified_gmt=modified_gmt)
        c["billing"].update(first_name=first, last_name=last, email=email)
        c["shipping"].update(first_name=first, last_name=last)
        c["_links"]["self"][0]["href"] = f"https://example.com/wp-json/wc/v3/customers/{rec.id}"
        if rec.override:
            c.update(rec.override)
        return c

    def _order(self, rec: Rec) -> dict[str, Any]:
        o = json.loads(self._order_tpl if rec.buyer else self._guest_tpl)
        created, created_gmt = woo_times(rec.created)
        modified, modified_gmt = woo_times(rec.updated)
        o.update(id=rec.id, number=str(rec.id), order_key=f"wc_order_{uuid.UUID(int=rec.id).hex[-13:]}",
                 date_created=created, date_created_gmt=created_gmt,
                 date_modified=modified, date_modified_gmt=modified_gmt)
        for key in ("date_paid", "date_completed"):
            if o[key]:
                o[key], o[key + "_gmt"] = modified, modified_gmt
        items = Decimal(0)
        for k, li in enumerate(o["line_items"]):
            unit = Decimal(3 + (rec.n + k) % 40) + Decimal("0.50")
            line = unit * li["quantity"]
            li.update(subtotal=f"{line:.2f}", total=f"{line:.2f}", price=float(unit))
            items += line
        shipping = Decimal(o["shipping_total"])
        tax = (items * Decimal("0.075")).quantize(Decimal("0.01")) if o["total_tax"] != "0.00" else Decimal(0)
        o.update(total=f"{items + shipping + tax:.2f}", total_tax=f"{tax:.2f}", cart_tax=f"{tax:.2f}")
        if o["tax_lines"]:
            o["tax_lines"][0]["tax_total"] = f"{tax:.2f}"
        if rec.buyer:
            buyer = self.customers.get(rec.buyer)
            first, last, email = self._person(buyer.n if buyer else rec.n)
            o["customer_id"] = rec.buyer
            o["billing"].update(first_name=first, last_name=last, email=email)
            o["_links"]["customer"][0]["href"] = f"https://example.com/wp-json/wc/v3/customers/{rec.buyer}"
        else:
            first, last, email = self._person(10_000 + rec.n)
            o["billing"].update(first_name=first, last_name=last, email=f"guest.{email}")
        o["_links"]["self"][0]["href"] = f"https://example.com/wp-json/wc/v3/orders/{rec.id}"
        if rec.override:
            o.update(copy.deepcopy(rec.override))
        return o

    # HTTP ------------------------------------------------------------------------------
    def throttle_reply(self, retry_after: str) -> Reply:
        # WooCommerce core has no rate limit; hosts and WAFs in front of it answer 429
        return Reply(429, {"code": "too_many_requests", "message": "Too many requests.",
                           "data": {"status": 429}}, {"Retry-After": retry_after})

    def error_body(self, status: int) -> Any:
        if status == 401:
            return {"code": "woocommerce_rest_cannot_view", "message": "Sorry, you cannot list resources.",
                    "data": {"status": 401}}
        if status == 403:
            return {"code": "woocommerce_rest_cannot_view", "message": "Sorry, you cannot list resources.",
                    "data": {"status": 403}}
        if status >= 500:
            return {"code": "internal_server_error", "message": "There has been a critical error on this "
                    "website.", "data": {"status": status}}
        return super().error_body(status)

    def _authorized(self, query: dict[str, str], headers: Any) -> bool:
        auth = headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                return False
            return hmac.compare_digest(user, self.key) and hmac.compare_digest(password, self.secret)
        return query.get("consumer_key") == self.key and query.get("consumer_secret") == self.secret

    def route(self, method: str, path: str, query: dict[str, str], headers: Any) -> Reply:
        prefix = "/wp-json/wc/v3/"
        resource = path[len(prefix):] if path.startswith(prefix) else None
        kind, _, leaf = (resource or "").partition("/")
        if method == "GET" and kind in ("customers", "orders") and leaf.isdigit():
            if not self._authorized(query, headers):  # one record by id, as the webhook re-read asks
                return Reply(401, {"code": "woocommerce_rest_cannot_view", "data": {"status": 401},
                                   "message": "Sorry, you cannot view this resource."})
            with self.lock:
                rec = getattr(self, kind).get(int(leaf))
                return Reply(200, self.render(kind, rec)) if rec else Reply(404, {
                    "code": f"woocommerce_rest_{kind[:-1]}_invalid_id", "message": "Invalid ID.",
                    "data": {"status": 404}})
        if method != "GET" or resource not in ("customers", "orders"):
            return Reply(404, {"code": "rest_no_route", "message": "No route was found matching the URL "
                                                               "and request method.", "data": {"status": 404}})
        if not self._authorized(query, headers):
            return Reply(401, {"code": "woocommerce_rest_cannot_view",
                               "message": "Sorry, you cannot list resources.", "data": {"status": 401}})
        try:
            per_page, page = int(query.get("per_page", "10")), int(query.get("page", "1"))
        except ValueError:
            per_page = page = 0
        if not 1 <= per_page <= 100 or page < 1:
            return Reply(400, {"code": "rest_invalid_param", "message": "Invalid parameter(s): per_page, page",
                               "data": {"status": 400, "params": {
                                   "per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"}}})
        with self.lock:
            table = getattr(self, resource)
            recs = [table[i] for i in self._ids[resource]]
            if resource == "orders":
                after = query.get("modified_after")
                if after:
                    gmt = query.get("dates_are_gmt") in ("true", "1")
                    dt = datetime.fromisoformat(after.replace("Z", "+00:00"))
                    if dt.tzinfo is None:
                        dt = dt.replace(tzinfo=timezone.utc if gmt else SITE_TZ)
                    floor = int(dt.timestamp())
                    recs = [r for r in recs if r.updated >= floor]
                status = query.get("status", "any")
                if status != "any":
                    recs = [r for r in recs if self._order(r)["status"] in status.split(",")]
                orderby, order = query.get("orderby", "date"), query.get("order", "desc")
                key = {"id": lambda r: r.id, "modified": lambda r: (r.updated, r.id),
                       "date": lambda r: (r.created, r.id)}.get(orderby)
            else:
                orderby, order = query.get("orderby", "name"), query.get("order", "asc")
                key = {"id": lambda r: r.id, "registered_date": lambda r: (r.created, r.id),
                       "name": lambda r: (self._person(r.n)[:2][::-1], r.id)}.get(orderby)
            if key is None:
                return Reply(400, {"code": "rest_invalid_param", "message": "Invalid parameter(s): orderby",
                                   "data": {"status": 400}})
            recs.sort(key=key, reverse=order == "desc")
            total = len(recs)
            size = self.page_size(per_page)
            pages = math.ceil(total / size)
            chosen = recs[(page - 1) * size: page * size]
            body = [self.render(resource, r) for r in chosen]
        headers_out = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        links = []
        base = f"{self.url}{path}?per_page={per_page}&page="
        if page > 1:
            links.append(f'<{base}{page - 1}>; rel="prev"')
        if page < pages:
            links.append(f'<{base}{page + 1}>; rel="next"')
        if links:
            headers_out["Link"] = ", ".join(links)
        return Reply(200, body, headers_out)

    # webhooks --------------------------------------------------------------------------
    TOPICS = {"customers": "customer.updated", "orders": "order.updated"}

    def delivery(self, kind: str, id: int, secret: str, *,
                 delivery_id: str | None = None) -> tuple[dict[str, str], bytes]:
        """A delivery of record ``id`` of ``kind`` as it is now, signed with ``secret`` (a
        fresh ``X-WC-Webhook-Delivery-ID`` unless given). Send it twice to replay it."""
        with self.lock:
            payload = self.render(kind, getattr(self, kind)[id])
        return self.webhook(self.TOPICS[kind], payload, secret, delivery_id=delivery_id)

    def forged_delivery(self, kind: str, id: int) -> tuple[dict[str, str], bytes]:
        """The same delivery signed with a secret that is not the store's."""
        return self.delivery(kind, id, "forged-" + uuid.uuid4().hex)

    @staticmethod
    def webhook(topic: str, payload: Any, secret: str, *, delivery_id: str | None = None,
                webhook_id: int = 7) -> tuple[dict[str, str], bytes]:
        """Headers and raw body of a delivery, signed the way WooCommerce signs it."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        resource, _, event = topic.partition(".")
        return ({"X-WC-Webhook-Source": "https://example.com/", "X-WC-Webhook-Topic": topic,
                 "X-WC-Webhook-Resource": resource, "X-WC-Webhook-Event": event,
                 "X-WC-Webhook-Signature": signature, "X-WC-Webhook-ID": str(webhook_id),
                 "X-WC-Webhook-Delivery-ID": delivery_id or uuid.uuid4().hex,
                 "Content-Type": "application/json"}, body)
