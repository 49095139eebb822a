"""The Stripe API resources the Stripe double serves (rapport/stripe_double.py): what Rapport
and its tests call, with Stripe's routes, parameters, list pagination, ``expand[]``, error
shape and events. State is in memory, under one lock; events go to ``emit``."""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from rapport import stripe_double_objects as obj
from rapport.stripe_double_forms import truthy

LIVE = ("active", "trialing", "past_due", "unpaid", "incomplete", "paused")
ENTITLED = ("active", "trialing", "past_due")


class ApiError(Exception):
    """An answer in Stripe's error shape: ``{"error": {type, code, message, param}}``."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type_: str = "invalid_request_error", headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}
        self.body = obj.error(type_, message, code, param)


def missing(param: str) -> ApiError:
    return ApiError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def invalid(param: str, message: str) -> ApiError:
    return ApiError(400, message, code="parameter_invalid_string", param=param)


def no_such(kind: str, id_: str, param: str | None = None, status: int = 404) -> ApiError:
    return ApiError(status, f"No such {kind}: '{id_}'", code="resource_missing", param=param or "id")


def _int(params: dict, name: str, default: int | None = None, lo: int | None = None, hi: int | None = None):
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, f"Invalid integer: {raw}", code="parameter_invalid_integer", param=name) from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ApiError(400, f"Invalid {name}: must be between {lo} and {hi}", code="parameter_invalid_integer",
                       param=name)
    return value


def _merge_metadata(current: dict, update: Any, param: str = "metadata") -> dict:
    if update in (None, ""):
        return {} if update == "" else current
    if not isinstance(update, dict):
        raise invalid(param, "Invalid object")
    out = dict(current)
    for k, v in update.items():
        if v == "":
            out.pop(k, None)
        else:
            out[k] = str(v)
    return out


def _diff(before: dict, after: dict) -> dict:
    """``previous_attributes``: the old value of each top-level field that changed."""
    return {k: before.get(k) for k in after if before.get(k) != after.get(k)}


class StripeApi:
    def __init__(self, base_url: Callable[[], str], emit: Callable[[str, dict, dict | None], dict],
                 lock: threading.RLock) -> None:
        from crm.billing import plans

        self._base_url, self._emit, self.lock = base_url, emit, lock
        self.customers: dict[str, dict] = {}
        self.products: dict[str, dict] = {}
        self.prices: dict[str, dict] = {}
        self.meters: dict[str, dict] = {}
        self.features: dict[str, dict] = {}         # by lookup key
        self.sessions: dict[str, dict] = {}
        self.session_extra: dict[str, dict] = {}    # line items and subscription_data, not on the object
        self.subscriptions: dict[str, dict] = {}
        self.invoices: dict[str, dict] = {}
        self.portal_sessions: dict[str, dict] = {}
        self.entitlements: dict[str, list[dict]] = {}  # by customer
        self.meter_events: list[dict] = []
        self._identifiers: set[str] = set()
        self._invoice_numbers = 0
        now = self.now()
        cat = plans.catalogue()
        for plan in plans.sold():
            prod = obj.product(now, plan)
            meter_id = None
            if plan.metered:
                m = obj.meter(now, plan)
                self.meters[m["id"]] = m
                meter_id = m["id"]
            pr = obj.price(now, plan, prod["id"], cat.currency, meter_id)
            prod["default_price"] = pr["id"]
            self.products[prod["id"]], self.prices[pr["id"]] = prod, pr
            for key in plan.features:
                self.features.setdefault(key, obj.feature(now, key))

    @staticmethod
    def now() -> int:
        return int(time.time())

    # -- routing -------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, re.Pattern, Callable]]:
        table = [
            ("GET", r"/v1/customers", self.list_customers),
            ("POST", r"/v1/customers", self.create_customer),
            ("GET", r"/v1/customers/(?P<id>[^/]+)", self.get_customer),
            ("POST", r"/v1/customers/(?P<id>[^/]+)", self.update_customer),
            ("GET", r"/v1/products", self.list_products),
            ("GET", r"/v1/products/(?P<id>[^/]+)", lambda p, id: self._get(self.products, "product", id)),
            ("GET", r"/v1/prices", self.list_prices),
            ("GET", r"/v1/prices/(?P<id>[^/]+)", lambda p, id: self._get(self.prices, "price", id)),
            ("GET", r"/v1/billing/meters", lambda p: self._list(list(self.meters.values()), p, "/v1/billing/meters")),
            ("GET", r"/v1/billing/meters/(?P<id>[^/]+)", lambda p, id: self._get(self.meters, "billing.meter", id)),
            ("POST", r"/v1/billing/meter_events", self.create_meter_event),
            ("GET", r"/v1/billing/meters/(?P<id>[^/]+)/event_summaries", self.meter_event_summaries),
            ("GET", r"/v1/entitlements/features",
             lambda p: self._list(list(self.features.values()), p, "/v1/entitlements/features")),
            ("GET", r"/v1/entitlements/active_entitlements", self.list_entitlements),
            ("GET", r"/v1/checkout/sessions", self.list_sessions),
            ("POST", r"/v1/checkout/sessions", self.create_session),
            ("GET", r"/v1/checkout/sessions/(?P<id>[^/]+)", self.get_session),
            ("GET", r"/v1/checkout/sessions/(?P<id>[^/]+)/line_items", self.session_line_items),
            ("POST", r"/v1/checkout/sessions/(?P<id>[^/]+)/expire", self.expire_session),
            ("POST", r"/v1/test_helpers/checkout/sessions/(?P<id>[^/]+)/complete", self.complete_session),
            ("POST", r"/v1/billing_portal/sessions", self.create_portal_session),
            ("GET", r"/v1/subscriptions", self.list_subscriptions),
            ("GET", r"/v1/subscriptions/(?P<id>[^/]+)", lambda p, id: self._get(self.subscriptions, "subscription", id)),
            ("POST", r"/v1/subscriptions/(?P<id>[^/]+)", self.update_subscription),
            ("DELETE", r"/v1/subscriptions/(?P<id>[^/]+)", self.cancel_subscription),
            ("POST", r"/v1/subscriptions/(?P<id>[^/]+)/resume", self.resume_subscription),
            ("POST", r"/v1/test_helpers/subscriptions/(?P<id>[^/]+)/pause", self.pause_subscription),
            ("POST", r"/v1/test_helpers/subscriptions/(?P<id>[^/]+)/resume", self.resume_subscription),
            ("POST", r"/v1/test_helpers/subscriptions/(?P<id>[^/]+)/fail_renewal", self.fail_renewal),
            ("POST", r"/v1/test_helpers/subscriptions/(?P<id>[^/]+)/advance", self.advance),
            ("POST", r"/v1/test_helpers/subscriptions/(?P<id>[^/]+)/trial_will_end", self.trial_will_end),
            ("GET", r"/v1/invoices", self.list_invoices),
            ("GET", r"/v1/invoices/(?P<id>[^/]+)", lambda p, id: self._get(self.invoices, "invoice", id)),
            ("POST", r"/v1/invoices/(?P<id>[^/]+)/pay", self.pay_invoice),
            ("GET", r"/v1/events", self.list_events),
            ("GET", r"/v1/events/(?P<id>[^/]+)", self.get_event),
        ]
        return [(m, re.compile(f"^{pattern}$"), fn) for m, pattern, fn in table]

    # set by the double: the event records (id -> Record) for the events endpoints
    events: Callable[[], list[dict]] = staticmethod(list)

    # -- helpers -------------------------------------------------------------------------
    def _index(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for store in (self.customers, self.products, self.prices, self.meters, self.sessions,
                      self.subscriptions, self.invoices):
            out.update(store)
        for f in self.features.values():
            out[f["id"]] = f
        return out

    def expand(self, body: Any, params: dict) -> Any:
        """``expand[]``: replace the id at each dotted path with its object (``data.`` for lists)."""
        paths = params.get("expand") or []
        if isinstance(paths, str):
            paths = [paths]
        body = copy.deepcopy(body)  # a snapshot: serialized after the lock is released
        if not paths:
            return body
        index = self._index()
        for path in paths:
            self._expand(body, str(path).split("."), index)
        return body

    def _expand(self, node: Any, parts: list[str], index: dict) -> None:
        if isinstance(node, list):
            for n in node:
                self._expand(n, parts, index)
            return
        if not isinstance(node, dict) or not parts:
            return
        key, rest = parts[0], parts[1:]
        if key == "line_items" and node.get("object") == "checkout.session" and not rest:
            node["line_items"] = self._line_items(node["id"])
            return
        value = node.get(key)
        if not rest and isinstance(value, str) and value in index:
            node[key] = copy.deepcopy(index[value])
        else:
            self._expand(value, rest, index)

    def _get(self, store: dict, kind: str, id_: str) -> dict:
        if id_ not in store:
            raise no_such(kind, id_)
        return store[id_]

    def _list(self, items: list[dict], params: dict, url: str) -> dict:
        """A Stripe list page, newest first: ``limit`` (1..100, 10), ``starting_after``, ``ending_before``."""
        limit = _int(params, "limit", 10, 1, 100)
        items = sorted(items, key=lambda o: o.get("created") or 0, reverse=True)
        ids = [o.get("id") for o in items]
        if params.get("starting_after"):
            after = params["starting_after"]
            if after not in ids:
                raise no_such("object", after, "starting_after", 400)
            items = items[ids.index(after) + 1:]
        elif params.get("ending_before"):
            before = params["ending_before"]
            if before not in ids:
                raise no_such("object", before, "ending_before", 400)
            items = items[:ids.index(before)][-limit:]
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}

    def _emit_sub(self, type_: str, sub: dict, before: dict | None = None) -> None:
        self._emit(type_, sub, _diff(before, sub) if before is not None else None)

    # -- customers -----------------------------------------------------------------------
    def create_customer(self, p: dict) -> dict:
        c = obj.customer(self.now(), email=p.get("email"), name=p.get("name"),
                         metadata=_merge_metadata({}, p.get("metadata")))
        c["description"] = p.get("description")
        self.customers[c["id"]] = c
        self._emit("customer.created", c, None)
        return c

    def get_customer(self, p: dict, id: str) -> dict:
        return self._get(self.customers, "customer", id)

    def update_customer(self, p: dict, id: str) -> dict:
        c = self._get(self.customers, "customer", id)
        before = copy.deepcopy(c)
        for field in ("email", "name", "description"):
            if field in p:
                c[field] = p[field] or None
        c["metadata"] = _merge_metadata(c["metadata"], p.get("metadata"))
        if c != before:
            self._emit("customer.updated", c, _diff(before, c))
        return c

    def list_customers(self, p: dict) -> dict:
        items = [c for c in self.customers.values() if not p.get("email") or c["email"] == p["email"]]
        return self._list(items, p, "/v1/customers")

    # -- catalogue -----------------------------------------------------------------------
    def list_prices(self, p: dict) -> dict:
        keys = p.get("lookup_keys")
        keys = [keys] if isinstance(keys, str) else keys
        items = [pr for pr in self.prices.values()
                 if (not keys or pr["lookup_key"] in keys)
                 and ("active" not in p or pr["active"] == truthy(p["active"]))
                 and (not p.get("product") or pr["product"] == p["product"])
                 and (not p.get("type") or pr["type"] == p["type"])]
        return self._list(items, p, "/v1/prices")

    def list_products(self, p: dict) -> dict:
        items = [x for x in self.products.values() if "active" not in p or x["active"] == truthy(p["active"])]
        return self._list(items, p, "/v1/products")

    # -- meter events --------------------------------------------------------------------
    def create_meter_event(self, p: dict) -> dict:
        if not p.get("event_name"):
            raise missing("event_name")
        payload = p.get("payload")
        if not isinstance(payload, dict):
            raise missing("payload")
        for key in ("stripe_customer_id", "value"):
            if payload.get(key) in (None, ""):
                raise missing(f"payload[{key}]")
        try:
            float(payload["value"])
        except ValueError:
            raise invalid("payload[value]", "The meter event value must be a number.") from None
        ident = p.get("identifier") or obj.new_id("mev", 24)
        if ident in self._identifiers:
            # what Stripe answers a repeated identifier (within its 24-hour uniqueness window)
            raise ApiError(400, f"An event already exists with identifier {ident}.",
                           code="resource_already_exists", param="identifier",
                           headers={"Stripe-Should-Retry": "false"})
        self._identifiers.add(ident)
        event = obj.meter_event(self.now(), {**p, "identifier": ident, "timestamp": _int(p, "timestamp")})
        self.meter_events.append(event)
        return event

    def meter_event_summaries(self, p: dict, id: str) -> dict:
        """The usage a customer reported to a meter between ``start_time`` and ``end_time``
        (one summary for the whole window)."""
        meter = self._get(self.meters, "billing.meter", id)
        for name in ("customer", "start_time", "end_time"):
            if not p.get(name):
                raise missing(name)
        start, end = _int(p, "start_time"), _int(p, "end_time")
        value = self.usage(p["customer"], meter["event_name"], start, end)
        summary = {"id": f"mtrusg_{id[-12:]}_{start}", "object": "billing.meter_event_summary",
                   "aggregated_value": value, "start_time": start, "end_time": end, "livemode": False,
                   "meter": id}
        return {"object": "list", "data": [summary], "has_more": False,
                "url": f"/v1/billing/meters/{id}/event_summaries"}

    def usage(self, customer_id: str, event_name: str, start: int, end: int) -> float:
        return sum(float(e["payload"]["value"]) for e in self.meter_events
                   if e["event_name"] == event_name and e["payload"].get("stripe_customer_id") == customer_id
                   and start <= e["timestamp"] < end)

    # -- entitlements --------------------------------------------------------------------
    def list_entitlements(self, p: dict) -> dict:
        if not p.get("customer"):
            raise missing("customer")
        return self._list(self.entitlements.get(p["customer"], []), p, "/v1/entitlements/active_entitlements")

    def _refresh_entitlements(self, customer_id: str, *, always: bool = False) -> None:
        """The customer's features from its entitled subscriptions' plans. A change emits
        ``entitlements.active_entitlement_summary.updated``, as Stripe does; so do a completed
        checkout, a plan change and a cancellation (``always``), even with no features."""
        from crm.billing import plans

        keys: list[str] = []
        for sub in self.subscriptions.values():
            if sub["customer"] == customer_id and sub["status"] in ENTITLED:
                for item in sub["items"]["data"]:
                    plan = plans.by_lookup_key(item["price"]["lookup_key"])
                    keys += [k for k in (plan.features if plan else ()) if k not in keys]
        current = self.entitlements.get(customer_id, [])
        if [e["lookup_key"] for e in current] == keys and customer_id in self.entitlements and not always:
            return
        kept = {e["lookup_key"]: e for e in current}
        self.entitlements[customer_id] = [kept.get(k) or obj.entitlement(self.features[k]) for k in keys]
        self._emit("entitlements.active_entitlement_summary.updated",
                   obj.entitlement_summary(customer_id, self.entitlements[customer_id]), None)

    # -- checkout ------------------------------------------------------------------------
    def create_session(self, p: dict) -> dict:
        if not p.get("mode"):
            raise missing("mode")
        if p["mode"] != "subscription":
            raise invalid("mode", "The Stripe double sells subscriptions only: mode must be subscription.")
        items = p.get("line_items")
        if not items:
            raise missing("line_items")
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
            raise invalid("line_items", "The Stripe double takes exactly one line item (line_items[0][price]).")
        price_id = items[0].get("price")
        if not price_id:
            raise missing("line_items[0][price]")
        if price_id not in self.prices:
            raise no_such("price", price_id, "line_items[0][price]", 400)
        metered = self.prices[price_id]["recurring"]["usage_type"] == "metered"
        if metered and items[0].get("quantity") not in (None, ""):
            raise invalid("line_items[0][quantity]", "Quantity should not be specified where usage_type is "
                                                     "`metered`. Remove quantity from `line_items[0]`.")
        if p.get("customer") and p.get("customer_email"):
            raise ApiError(400, "You may only specify one of these parameters: customer, customer_email.",
                           code="parameter_invalid_string", param="customer_email")
        customer = None
        if p.get("customer"):
            if p["customer"] not in self.customers:
                raise no_such("customer", p["customer"], "customer", 400)
            customer = self.customers[p["customer"]]
        sub_data = p.get("subscription_data") or {}
        if not isinstance(sub_data, dict):
            raise invalid("subscription_data", "Invalid object")
        trial = _int(sub_data, "trial_period_days", None, 1, 730)
        cs = obj.checkout_session(self.now(), self._base_url(), price=self.prices[price_id],
                                  params={**p, "metadata": _merge_metadata({}, p.get("metadata"))},
                                  customer=customer)
        self.sessions[cs["id"]] = cs
        self.session_extra[cs["id"]] = {
            "price": price_id, "quantity": _int(items[0], "quantity", 1, 1),
            "trial_period_days": trial,
            "metadata": _merge_metadata({}, sub_data.get("metadata"), "subscription_data[metadata]")}
        return cs

    def get_session(self, p: dict, id: str) -> dict:
        return self._get(self.sessions, "checkout.session", id)

    def list_sessions(self, p: dict) -> dict:
        items = [s for s in self.sessions.values()
                 if all(not p.get(f) or s.get(f) == p[f] for f in ("customer", "subscription", "status"))]
        return self._list(items, p, "/v1/checkout/sessions")

    def _line_items(self, session_id: str) -> dict:
        extra, cs = self.session_extra[session_id], self.sessions[session_id]
        price = self.prices[extra["price"]]
        item = {"id": f"li_{session_id[-24:]}", "object": "item", "amount_discount": 0, "amount_tax": 0,
                "amount_subtotal": cs["amount_subtotal"], "amount_total": cs["amount_total"],
                "currency": price["currency"], "description": price["nickname"],
                "price": copy.deepcopy(price), "quantity": extra["quantity"]}
        return {"object": "list", "data": [item], "has_more": False,
                "url": f"/v1/checkout/sessions/{session_id}/line_items"}

    def session_line_items(self, p: dict, id: str) -> dict:
        self._get(self.sessions, "checkout.session", id)
        return self._line_items(id)

    def expire_session(self, p: dict, id: str) -> dict:
        cs = self._get(self.sessions, "checkout.session", id)
        if cs["status"] != "open":
            raise ApiError(400, f"Only Checkout Sessions with a status of open can be expired; this one is "
                                f"{cs['status']}.", param="session")
        cs["status"] = "expired"
        self._emit("checkout.session.expired", cs, None)
        return cs

    def complete_session(self, p: dict, id: str) -> dict:
        """Pay the session as if with a test card: the customer (created from ``customer_email``
        if none), the subscription (trialing with a trial), its first invoice paid, and the
        events checkout.session.completed, customer.subscription.created, invoice.paid and
        entitlements.active_entitlement_summary.updated."""
        cs = self._get(self.sessions, "checkout.session", id)
        if cs["status"] != "open":
            raise ApiError(400, f"This Checkout Session is {cs['status']}, not open.", param="session")
        extra, now = self.session_extra[id], self.now()
        if cs["customer"]:
            customer = self.customers[cs["customer"]]
        else:
            email = cs["customer_email"] or p.get("email") or "customer@example.com"
            customer = obj.customer(now, email=email, name=p.get("name"), metadata={})
            self.customers[customer["id"]] = customer
        price = self.prices[extra["price"]]
        sub = obj.subscription(now, customer_id=customer["id"], price=price, metadata=extra["metadata"],
                               trial_days=extra["trial_period_days"], currency=price["currency"])
        self.subscriptions[sub["id"]] = sub
        amount = 0 if sub["status"] == "trialing" or price["recurring"]["usage_type"] == "metered" \
            else price["unit_amount"] * (sub["items"]["data"][0]["quantity"] or 1)
        inv = self._invoice(sub, amount, "subscription_create", paid=True)
        cs.update(status="complete", payment_status="paid" if amount else "no_payment_required",
                  customer=customer["id"], subscription=sub["id"], invoice=inv["id"],
                  customer_details={"address": None, "email": customer["email"], "name": customer["name"],
                                    "phone": None, "tax_exempt": "none", "tax_ids": [],
                                    "business_name": None, "individual_name": None})
        self._emit("checkout.session.completed", cs, None)
        self._emit("customer.subscription.created", sub, None)
        self._emit("invoice.paid", inv, None)
        self._refresh_entitlements(customer["id"], always=True)
        return cs

    def _invoice(self, sub: dict, amount: int, reason: str, *, paid: bool) -> dict:
        self._invoice_numbers += 1
        inv = obj.invoice(self.now(), sub, amount=amount, reason=reason, paid=paid, number=self._invoice_numbers)
        inv["hosted_invoice_url"] = f"{self._base_url()}/invoices/{inv['id']}"
        self.invoices[inv["id"]] = inv
        sub["latest_invoice"] = inv["id"]
        return inv

    def create_portal_session(self, p: dict) -> dict:
        if not p.get("customer"):
            raise missing("customer")
        if p["customer"] not in self.customers:
            raise no_such("customer", p["customer"], "customer", 400)
        ps = obj.portal_session(self.now(), self._base_url(), p["customer"], p.get("return_url"))
        self.portal_sessions[ps["id"]] = ps
        return ps

    # -- subscriptions -------------------------------------------------------------------
    def list_subscriptions(self, p: dict) -> dict:
        status = p.get("status")
        items = [s for s in self.subscriptions.values()
                 if (not p.get("customer") or s["customer"] == p["customer"])
                 and (status == "all" or (s["status"] == status if status else s["status"] != "canceled"))
                 and (not p.get("price") or any(i["price"]["id"] == p["price"] for i in s["items"]["data"]))]
        return self._list(items, p, "/v1/subscriptions")

    def _sub(self, id: str, *, not_canceled: bool = True) -> dict:
        sub = self._get(self.subscriptions, "subscription", id)
        if not_canceled and sub["status"] == "canceled":
            raise ApiError(400, "A canceled subscription can only update its cancellation_details and metadata.",
                           param="subscription")
        return sub

    def update_subscription(self, p: dict, id: str) -> dict:
        sub = self._sub(id, not_canceled=bool(set(p) - {"metadata", "cancellation_details", "expand"}))
        before = copy.deepcopy(sub)
        items = p.get("items")
        if items:
            if not isinstance(items, list) or not isinstance(items[0], dict):
                raise invalid("items", "Invalid array")
            new_price = items[0].get("price")
            item = sub["items"]["data"][0]
            if items[0].get("id") and items[0]["id"] != item["id"]:
                raise no_such("subscription_item", items[0]["id"], "items[0][id]", 400)
            if new_price:
                if new_price not in self.prices:
                    raise no_such("price", new_price, "items[0][price]", 400)
                price = self.prices[new_price]
                item.update(price=copy.deepcopy(price), plan=obj.legacy_plan(price),
                            quantity=None if price["recurring"]["usage_type"] == "metered" else 1)
        if "cancel_at_period_end" in p:
            on = truthy(p["cancel_at_period_end"])
            end = sub["items"]["data"][0]["current_period_end"]
            sub.update(cancel_at_period_end=on, cancel_at=end if on else None,
                       canceled_at=self.now() if on else None)
            sub["cancellation_details"]["reason"] = "cancellation_requested" if on else None
        sub["metadata"] = _merge_metadata(sub["metadata"], p.get("metadata"))
        if sub != before:
            self._emit_sub("customer.subscription.updated", sub, before)
            plan_changed = sub["items"]["data"][0]["price"]["id"] != before["items"]["data"][0]["price"]["id"]
            self._refresh_entitlements(sub["customer"], always=plan_changed)
        return sub

    def cancel_subscription(self, p: dict, id: str) -> dict:
        sub = self._get(self.subscriptions, "subscription", id)
        if sub["status"] == "canceled":
            raise no_such("subscription", id)  # Stripe: a canceled subscription cannot be canceled again
        self._end(sub, self.now(), "cancellation_requested")
        return sub

    def _end(self, sub: dict, at: int, reason: str) -> None:
        sub.update(status="canceled", canceled_at=sub["canceled_at"] or at, ended_at=at)
        sub["cancellation_details"]["reason"] = reason
        self._emit("customer.subscription.deleted", sub, None)
        self._refresh_entitlements(sub["customer"], always=True)

    def pause_subscription(self, p: dict, id: str) -> dict:
        sub = self._sub(id)
        if sub["status"] not in ("active", "trialing"):
            raise ApiError(400, f"Only an active or trialing subscription can be paused; this one is {sub['status']}.",
                           param="subscription")
        before = copy.deepcopy(sub)
        sub["status"] = "paused"
        self._emit("customer.subscription.paused", sub, None)
        self._emit_sub("customer.subscription.updated", sub, before)
        self._refresh_entitlements(sub["customer"])
        return sub

    def resume_subscription(self, p: dict, id: str) -> dict:
        sub = self._sub(id)
        if sub["status"] != "paused":
            raise ApiError(400, "Only a paused subscription can be resumed.", param="subscription")
        before, now = copy.deepcopy(sub), self.now()
        item = sub["items"]["data"][0]
        item.update(current_period_start=now, current_period_end=obj.add_month(now))
        sub.update(status="active", billing_cycle_anchor=now)
        self._emit("customer.subscription.resumed", sub, None)
        self._emit_sub("customer.subscription.updated", sub, before)
        self._refresh_entitlements(sub["customer"])
        return sub

    def _next_period(self, sub: dict) -> None:
        item = sub["items"]["data"][0]
        start = item["current_period_end"]
        item.update(current_period_start=start, current_period_end=obj.add_month(start))

    def _renewal_amount(self, sub: dict) -> int:
        """The renewal's charge: the price, or for a metered price the usage reported to its
        meter in the period that ends (``transform_quantity``: per N units, rounded up)."""
        item = sub["items"]["data"][0]
        price = item["price"]
        if price["recurring"]["usage_type"] != "metered":
            return price["unit_amount"] * (item["quantity"] or 1)
        meter = self.meters.get(price["recurring"]["meter"])
        used = self.usage(sub["customer"], meter["event_name"], item["current_period_start"],
                          item["current_period_end"]) if meter else 0
        per = (price["transform_quantity"] or {}).get("divide_by") or 1
        return int(-(-used // per)) * price["unit_amount"]

    def fail_renewal(self, p: dict, id: str) -> dict:
        """The next period starts and its charge fails: an open invoice, status past_due,
        events invoice.payment_failed and customer.subscription.updated."""
        sub = self._sub(id)
        if sub["status"] not in ("active", "trialing", "past_due"):
            raise ApiError(400, f"A {sub['status']} subscription does not renew.", param="subscription")
        self._renew(sub, paid=False)
        return sub

    def advance(self, p: dict, id: str) -> dict:
        """The next period: paid (or failed with ``fail=true``); a subscription set to cancel
        at the period's end ends instead; a trial ends into active."""
        sub = self._sub(id)
        if sub["status"] not in ("active", "trialing", "past_due"):
            raise ApiError(400, f"A {sub['status']} subscription does not renew.", param="subscription")
        if sub["cancel_at_period_end"]:
            self._end(sub, sub["items"]["data"][0]["current_period_end"], "cancellation_requested")
        else:
            self._renew(sub, paid=not truthy(p.get("fail", "false")))
        return sub

    def trial_will_end(self, p: dict, id: str) -> dict:
        """``customer.subscription.trial_will_end``, which Stripe sends three days before a trial ends."""
        sub = self._sub(id)
        if sub["status"] != "trialing":
            raise ApiError(400, f"The subscription is {sub['status']}, not trialing.", param="subscription")
        self._emit("customer.subscription.trial_will_end", sub, None)
        return sub

    def _renew(self, sub: dict, *, paid: bool) -> None:
        before = copy.deepcopy(sub)
        metered = sub["items"]["data"][0]["price"]["recurring"]["usage_type"] == "metered"
        amount = 0 if sub["status"] == "trialing" and metered else self._renewal_amount(sub)
        self._next_period(sub)
        inv = self._invoice(sub, amount, "subscription_cycle", paid=paid)
        sub["status"] = "active" if paid else "past_due"
        self._emit("invoice.paid" if paid else "invoice.payment_failed", inv, None)
        self._emit_sub("customer.subscription.updated", sub, before)
        self._refresh_entitlements(sub["customer"])

    # -- invoices ------------------------------------------------------------------------
    def list_invoices(self, p: dict) -> dict:
        items = [i for i in self.invoices.values()
                 if (not p.get("customer") or i["customer"] == p["customer"])
                 and (not p.get("status") or i["status"] == p["status"])
                 and (not p.get("subscription")
                      or i["parent"]["subscription_details"]["subscription"] == p["subscription"])]
        return self._list(items, p, "/v1/invoices")

    def pay_invoice(self, p: dict, id: str) -> dict:
        """Pay an open invoice; its subscription, past_due on it, becomes active again."""
        inv = self._get(self.invoices, "invoice", id)
        if inv["status"] != "open":
            raise ApiError(400, f"Invoice is already {inv['status']}.", param="invoice")
        now = self.now()
        inv.update(status="paid", amount_paid=inv["amount_due"], amount_remaining=0,
                   attempt_count=inv["attempt_count"] + 1, next_payment_attempt=None, auto_advance=False)
        inv["status_transitions"]["paid_at"] = now
        self._emit("invoice.paid", inv, None)
        sub = self.subscriptions.get(inv["parent"]["subscription_details"]["subscription"])
        if sub and sub["status"] == "past_due" and sub["latest_invoice"] == inv["id"]:
            before = copy.deepcopy(sub)
            sub["status"] = "active"
            self._emit_sub("customer.subscription.updated", sub, before)
            self._refresh_entitlements(sub["customer"])
        return inv

    # -- events --------------------------------------------------------------------------
    def list_events(self, p: dict) -> dict:
        types = p.get("types") or ([p["type"]] if p.get("type") else [])
        types = [types] if isinstance(types, str) else types
        created = p.get("created")
        bounds = created if isinstance(created, dict) else ({"gte": created, "lte": created} if created else {})
        ops = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b,
               "lte": lambda a, b: a <= b}
        for op in bounds:
            if op not in ops:
                raise invalid(f"created[{op}]", f"Unknown filter: created[{op}]")
        bound = {op: _int(bounds, op) for op in bounds}
        success = p.get("delivery_success")

        def keep(e: dict) -> bool:
            if types and not any(e["type"] == t or (t.endswith("*") and e["type"].startswith(t[:-1]))
                                 for t in types):
                return False
            if not all(ops[op](e["created"], v) for op, v in bound.items()):
                return False
            return success is None or e["delivered"] == truthy(success)

        seq = {e["id"]: n for n, e in enumerate(self.events())}
        items = [e for e in self.events() if keep(e)]
        for e in items:  # same-second events: the later one first, as creation order says
            e["created_seq"] = seq[e["id"]]
        items.sort(key=lambda e: (e["created"], e["created_seq"]), reverse=True)
        page = self._list_ordered(items, p, "/v1/events")
        page["data"] = [self._public_event(e) for e in page["data"]]
        return page

    def _list_ordered(self, items: list[dict], p: dict, url: str) -> dict:
        limit = _int(p, "limit", 10, 1, 100)
        ids = [e["id"] for e in items]
        if p.get("starting_after") in ids:
            items = items[ids.index(p["starting_after"]) + 1:]
        elif p.get("ending_before") in ids:
            items = items[:ids.index(p["ending_before"])][-limit:]
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}

    @staticmethod
    def _public_event(e: dict) -> dict:
        return {k: v for k, v in e.items() if k not in ("delivered", "attempts", "created_seq")}

    def get_event(self, p: dict, id: str) -> dict:
        for e in self.events():
            if e["id"] == id:
                return self._public_event(e)
        raise no_such("event", id)
