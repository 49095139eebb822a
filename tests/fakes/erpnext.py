"""A fake Frappe site running ERPNext's REST API (``/api/resource``, ``/api/method``).

The documents are written by hand after Frappe's public REST API documentation ("Listing
documents", "Filters, Fields & Pagination") and the field names of ERPNext's DocTypes
(Customer, Contact, Address, Sales Order, Sales Invoice and their child tables); none of
ERPNext's own (GPL) test records are copied. The response shapes follow the MIT fixtures
``frappe/rest_get_person_000000012.json`` and ``frappe/rest_list_person_fields.json``:
``{"data": {...}}`` for one document, ``{"data": [...]}`` for a list, times as naive
``YYYY-MM-DD HH:MM:SS.ffffff`` in the site's time zone (``str(datetime)``, so without the
fraction when it is zero).

Behaviour, like Frappe's:
- auth ``Authorization: token <key>:<secret>``; a wrong pair answers 401
  (``AuthenticationError``); no header is the Guest user, who may read nothing (403);
- ``GET /api/resource/<DocType>``: ``fields`` (JSON list, ``"*"`` for all; only ``name``
  without it), ``filters`` (JSON list of ``[field, op, value]`` or ``[doctype, field, op,
  value]``, the latter on a child table, or a dict), ``order_by`` (default ``modified desc``),
  ``limit_page_length`` / ``limit`` (default 20, ``0`` = all), ``limit_start`` (offset);
- a child DocType is listed only with ``parent=<its parent DocType>`` (else 403, as
  ``check_parent_permission``); rows carry ``parent``, ``parenttype``, ``parentfield``, ``idx``;
- ``GET /api/resource/<DocType>/<name>``: the whole document with its child tables, 404
  ``DoesNotExistError`` when missing;
- ``GET /api/method/frappe.client.get_time_zone`` (guest allowed) and
  ``frappe.auth.get_logged_user``.

Test controls (fakes.md): :meth:`put` / :meth:`touch` write documents with chosen
``modified`` times (many may share one), :meth:`deny` refuses a DocType to the API user,
``max_page_length`` caps a positive ``limit_page_length`` (Frappe itself has no cap),
``fail_next`` / ``throttle_next`` (429 with ``Retry-After``) from :class:`FakeVendor`,
``doc_calls`` logs method, unquoted path, query and headers, :meth:`webhook` builds signed, forged and
replayable deliveries.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

from tests.fakes import FakeVendor, Reply

KEY, SECRET = "4f1c2a9d7e3b6a0", "9a8b7c6d5e4f3a2"
TIME_ZONE = "Asia/Kolkata"  # +05:30, no DST: the site's naive times differ from UTC
START = datetime(2024, 3, 1, 9, 0, 0, 125000)

# parent DocType → table field → child DocType
TABLES: dict[str, dict[str, str]] = {
    "Customer": {"credit_limits": "Customer Credit Limit"},
    "Contact": {"links": "Dynamic Link", "email_ids": "Contact Email", "phone_nos": "Contact Phone"},
    "Address": {"links": "Dynamic Link"},
    "Sales Order": {"items": "Sales Order Item"},
    "Sales Invoice": {"items": "Sales Invoice Item"},
}
CHILD_DOCTYPES = {child for tables in TABLES.values() for child in tables.values()}
COUNTRIES = [("Germany", "de"), ("India", "in"), ("United States", "us"), ("United Kingdom", "gb"), ("France", "fr")]


def frappe_time(dt: datetime) -> str:
    """How Frappe writes a datetime in JSON: ``str(datetime)``."""
    return str(dt)


def _parse(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def _error(status: int, exc_type: str, message: str) -> Reply:
    return Reply(status, {"exc_type": exc_type, "exception": f"frappe.exceptions.{exc_type}: {message}",
                          "_server_messages": json.dumps([json.dumps({"message": message})])})


# hand-written documents (field names of ERPNext's DocTypes) ---------------------------------


def customer_doc(name: str, *, company: bool = True, **changes: Any) -> dict[str, Any]:
    doc = {"name": name, "doctype": "Customer", "customer_name": name,
           "customer_type": "Company" if company else "Individual", "customer_group": "Commercial",
           "territory": "Germany" if company else "India", "tax_id": "DE811907980" if company else None,
           "default_currency": "EUR" if company else "INR", "payment_terms": "Net 30" if company else None,
           "disabled": 0, "email_id": None, "mobile_no": None, "website": None, "docstatus": 0,
           "owner": "Administrator", "modified_by": "Administrator", "idx": 0, "credit_limits": []}
    doc.update(changes)
    return doc


def contact_doc(name: str, first: str, last: str, *, customer: str | None, email: str | None = None,
                **changes: Any) -> dict[str, Any]:
    doc = {"name": name, "doctype": "Contact", "first_name": first, "last_name": last,
           "full_name": f"{first} {last}", "email_id": email or "", "phone": "", "mobile_no": "",
           "designation": None, "department": None, "status": "Passive", "unsubscribed": 0,
           "is_primary_contact": 0, "docstatus": 0, "idx": 0,
           "email_ids": [{"email_id": email, "is_primary": 1}] if email else [], "phone_nos": [],
           "links": [{"link_doctype": "Customer", "link_name": customer, "link_title": customer}] if customer else []}
    doc.update(changes)
    return doc


def address_doc(name: str, *, customer: str | None, line1: str = "Friedrichstraße 68", city: str = "Berlin",
                country: str = "Germany", **changes: Any) -> dict[str, Any]:
    doc = {"name": name, "doctype": "Address", "address_title": name.rsplit("-", 1)[0],
           "address_type": "Billing", "address_line1": line1, "address_line2": None, "city": city,
           "state": None, "pincode": "10117", "country": country, "email_id": None, "phone": None,
           "is_primary_address": 1, "is_shipping_address": 0, "disabled": 0, "docstatus": 0, "idx": 0,
           "links": [{"link_doctype": "Customer", "link_name": customer, "link_title": customer}] if customer else []}
    doc.update(changes)
    return doc


def _item(code: str, name: str, qty: float, rate: str, **extra: Any) -> dict[str, Any]:
    return {"item_code": code, "item_name": name, "description": name, "qty": qty, "uom": "Nos",
            "stock_uom": "Nos", "conversion_factor": 1.0, "rate": float(rate),
            "amount": float(rate) * qty, "warehouse": "Stores - WP", **extra}


def sales_order_doc(name: str, customer: str, *, docstatus: int = 1, contact: str | None = None,
                    **changes: Any) -> dict[str, Any]:
    """Two items (2 × 120.00 + 1 × 45.50 = 285.50), 19 % VAT 54.25, grand total 339.75."""
    doc = {"name": name, "doctype": "Sales Order", "naming_series": "SAL-ORD-.YYYY.-", "customer": customer,
           "customer_name": customer, "order_type": "Sales", "transaction_date": "2024-03-01",
           "delivery_date": "2024-03-08", "company": "Wind Power LLC", "currency": "EUR", "conversion_rate": 1.0,
           "selling_price_list": "Standard Selling", "total_qty": 3.0, "total": 285.5, "net_total": 285.5,
           "total_taxes_and_charges": 54.25, "discount_amount": 0.0, "grand_total": 339.75,
           "rounding_adjustment": 0.25, "rounded_total": 340.0, "advance_paid": 0.0,
           "status": "To Deliver and Bill", "delivery_status": "Not Delivered", "billing_status": "Not Billed",
           "per_delivered": 0.0, "per_billed": 0.0, "contact_person": contact, "contact_email": None,
           "payment_terms_template": None, "docstatus": docstatus, "idx": 0,
           "items": [_item("SKU-PUMP-20", "Circulation pump 20 l/min", 2.0, "120.00"),
                     _item("SKU-SEAL-KIT", "Seal kit", 1.0, "45.50")]}
    doc.update(changes)
    return doc


def sales_invoice_doc(name: str, customer: str, *, docstatus: int = 1, outstanding: float = 339.75,
                      contact: str | None = None, order: str | None = None, **changes: Any) -> dict[str, Any]:
    doc = {"name": name, "doctype": "Sales Invoice", "naming_series": "ACC-SINV-.YYYY.-", "customer": customer,
           "customer_name": customer, "company": "Wind Power LLC", "posting_date": "2024-03-02",
           "posting_time": "11:30:00", "due_date": "2024-04-01", "currency": "EUR", "conversion_rate": 1.0,
           "total_qty": 3.0, "total": 285.5, "net_total": 285.5, "total_taxes_and_charges": 54.25,
           "discount_amount": 0.0, "grand_total": 339.75, "rounding_adjustment": 0.0, "rounded_total": 0.0,
           "disable_rounded_total": 1, "outstanding_amount": outstanding, "is_return": 0, "return_against": None,
           "payment_terms_template": "Net 30", "contact_person": contact, "contact_email": None,
           "status": "Unpaid" if outstanding else "Paid", "docstatus": docstatus, "idx": 0,
           "items": [_item("SKU-PUMP-20", "Circulation pump 20 l/min", 2.0, "120.00", sales_order=order),
                     _item("SKU-SEAL-KIT", "Seal kit", 1.0, "45.50", sales_order=order)]}
    doc.update(changes)
    return doc


class FakeFrappe(FakeVendor):
    def __init__(self, key: str = KEY, secret: str = SECRET, *, time_zone: str | None = TIME_ZONE,
                 start: datetime = START) -> None:
        super().__init__()
        self.key, self.secret, self.time_zone = key, secret, time_zone
        self.now = start  # the site's clock (naive, site time): moves on each write
        self.docs: dict[str, dict[str, dict[str, Any]]] = {dt: {} for dt in TABLES}
        self.docs["Country"] = {n: {"name": n, "country_name": n, "code": c, "modified": frappe_time(start)}
                                for n, c in COUNTRIES}
        self.denied: set[str] = set()
        self.max_page_length: int | None = None
        self.doc_calls: list[dict[str, Any]] = []  # every request: method, unquoted path, query, lower-case headers

    # vendor-side writes -------------------------------------------------------------------
    def tick(self) -> str:
        with self.lock:
            self.now += timedelta(seconds=1)
            return frappe_time(self.now)

    def put(self, doc: dict[str, Any], modified: datetime | str | None = None) -> dict[str, Any]:
        """Insert or replace a document; ``modified`` as given (many may share one) or the clock's."""
        with self.lock:
            doc = copy.deepcopy(doc)
            doctype, name = doc["doctype"], doc["name"]
            old = self.docs[doctype].get(name)
            stamp = frappe_time(modified) if isinstance(modified, datetime) else modified or self.tick()
            doc["modified"] = stamp
            doc["creation"] = old["creation"] if old else doc.get("creation") or stamp
            doc.setdefault("docstatus", 0)
            for table, child in TABLES[doctype].items():
                for i, row in enumerate(doc.get(table) or [], start=1):
                    row.update(doctype=child, parent=name, parenttype=doctype, parentfield=table, idx=i,
                               name=row.get("name") or hashlib.sha1(f"{name}/{table}/{i}".encode()).hexdigest()[:10],
                               docstatus=doc["docstatus"], modified=stamp, creation=doc["creation"])
            self.docs[doctype][name] = doc
            self.now = max(self.now, _parse(stamp))
            return copy.deepcopy(doc)

    def touch(self, doctype: str, name: str, modified: datetime | str | None = None, **changes: Any) -> str:
        """Change fields of a document and bump its ``modified``; returns the new ``modified``."""
        with self.lock:
            doc = {**copy.deepcopy(self.docs[doctype][name]), **changes}
            return self.put(doc, modified)["modified"]

    def delete(self, doctype: str, name: str) -> None:
        with self.lock:
            del self.docs[doctype][name]

    def deny(self, *doctypes: str) -> None:
        """The API user's roles lose read permission on these DocTypes (403 PermissionError)."""
        with self.lock:
            self.denied.update(doctypes)

    def seed_customers(self, count: int, *, modified: datetime | None = None, prefix: str = "Customer",
                       company_every: int = 2) -> list[str]:
        """``count`` customers (every ``company_every``-th a company), all at ``modified`` when given."""
        names = []
        for i in range(count):
            name = f"{prefix} {i:05d}"
            self.put(customer_doc(name, company=i % company_every == 0), modified)
            names.append(name)
        return names

    # HTTP ---------------------------------------------------------------------------------
    def throttle_reply(self, retry_after: str) -> Reply:
        reply = _error(429, "RateLimitExceededError", "You hit the rate limit because of too many requests.")
        reply.headers["Retry-After"] = retry_after
        return reply

    def _user(self, headers: Any) -> str | None:
        """"api" for the right token, "Guest" for none, None for a wrong one."""
        auth = headers.get("Authorization") or ""
        if not auth:
            return "Guest"
        scheme, _, token = auth.partition(" ")
        key, _, secret = token.partition(":")
        if scheme.lower() == "token" and hmac.compare_digest(key, self.key) and hmac.compare_digest(secret, self.secret):
            return "api"
        return None

    def route(self, method: str, path: str, query: dict[str, str], headers: Any) -> Reply:
        path = unquote(path)
        with self.lock:
            self.doc_calls.append({"method": method, "path": path, "query": dict(query),
                               "headers": {k.lower(): v for k, v in headers.items()}})
        user = self._user(headers)
        if method != "GET":
            return _error(405, "ValidationError", "Method not allowed in this fake")
        if path == "/api/method/frappe.client.get_time_zone":  # allow_guest
            return Reply(200, {"message": {"time_zone": self.time_zone}})
        if user is None:
            return _error(401, "AuthenticationError", "Invalid API key or secret")
        if path == "/api/method/frappe.auth.get_logged_user":
            return _error(403, "PermissionError", "Not permitted") if user == "Guest" else Reply(
                200, {"message": "integration@example.com"})
        if not path.startswith("/api/resource/"):
            return Reply(404, {"exc_type": "PageDoesNotExistError", "message": "Not Found"})
        doctype, _, name = path[len("/api/resource/"):].partition("/")
        known = doctype in self.docs or doctype in CHILD_DOCTYPES
        if not known:
            return _error(404, "DoesNotExistError", f"DocType {doctype} not found")
        if user == "Guest" or doctype in self.denied:
            return _error(403, "PermissionError", f"No permission for {doctype}")
        with self.lock:
            if name:
                doc = self.docs.get(doctype, {}).get(name)
                if doc is None:
                    return _error(404, "DoesNotExistError", f"{doctype} {name} not found")
                return Reply(200, {"data": copy.deepcopy(doc)})
            return self._list(doctype, query)

    def _rows(self, doctype: str, query: dict[str, str]) -> list[dict[str, Any]] | Reply:
        if doctype not in CHILD_DOCTYPES:
            return list(self.docs[doctype].values())
        parent = query.get("parent")
        if not parent or doctype not in TABLES.get(parent, {}).values() or parent in self.denied:
            return _error(403, "PermissionError", f"No permission to read {doctype}")
        return [row for doc in self.docs[parent].values() for table, child in TABLES[parent].items()
                if child == doctype for row in doc.get(table) or []]

    def _list(self, doctype: str, query: dict[str, str]) -> Reply:
        rows = self._rows(doctype, query)
        if isinstance(rows, Reply):
            return rows
        try:
            fields = json.loads(query.get("fields") or '["name"]')
            filters = json.loads(query.get("filters") or "[]")
            start = int(query.get("limit_start") or 0)
            length = int(query.get("limit_page_length") or query.get("limit") or 20)
        except ValueError as exc:
            return _error(417, "ValidationError", f"bad parameter: {exc}")
        if isinstance(filters, dict):
            filters = [[k, *(v if isinstance(v, list) else ["=", v])] for k, v in filters.items()]
        rows = [r for r in rows if all(self._match(doctype, r, f) for f in filters)]
        for key, desc in reversed(self._order(query.get("order_by") or "modified desc")):
            rows.sort(key=lambda r, k=key: self._sortable(k, r.get(k)), reverse=desc)
        if length > 0 and self.max_page_length:
            length = min(length, self.max_page_length)
        rows = rows[start:start + length] if length > 0 else rows[start:]
        out = []
        for r in rows:
            if "*" in fields:
                out.append({k: v for k, v in r.items() if not isinstance(v, list)})
            else:
                out.append({f: r.get(f) for f in fields})
        return Reply(200, {"data": copy.deepcopy(out)})

    @staticmethod
    def _order(order_by: str) -> list[tuple[str, bool]]:
        out = []
        for part in order_by.split(","):
            words = part.replace("`", "").split()
            if words:
                out.append((words[0].split(".")[-1], len(words) > 1 and words[1].lower() == "desc"))
        return out

    @staticmethod
    def _sortable(field: str, value: Any) -> Any:
        if field in ("modified", "creation"):
            return _parse(value)
        return (value is None, value if value is not None else "")

    def _match(self, doctype: str, row: dict[str, Any], flt: list[Any]) -> bool:
        if len(flt) == 4:
            dt, field, op, value = flt
            if dt != doctype:  # a condition on a child table: any of its rows
                return any(self._test(r.get(field), op, value, field) for table, child in TABLES.get(doctype, {}).items()
                           if child == dt for r in row.get(table) or [])
        else:
            field, op, value = flt
        return self._test(row.get(field), op, value, field)

    @staticmethod
    def _test(actual: Any, op: str, value: Any, field: str) -> bool:
        op = op.lower()
        if op in ("in", "not in"):
            values = value if isinstance(value, list) else [v.strip() for v in str(value).split(",")]
            return (str(actual) in [str(v) for v in values]) == (op == "in")
        if field in ("modified", "creation"):
            a, v = _parse(actual), _parse(value)
        elif isinstance(actual, (int, float)) and not isinstance(actual, bool):
            a, v = actual, float(value)
        else:
            a, v = str(actual if actual is not None else ""), str(value)
        if op == "=":
            return a == v
        if op == "!=":
            return a != v
        if op == ">":
            return a > v
        if op == "<":
            return a < v
        if op == ">=":
            return a >= v
        if op == "<=":
            return a <= v
        if op == "like":
            return str(value).strip("%").lower() in str(actual or "").lower()
        raise ValueError(f"operator {op} not supported by the fake")

    # webhooks -----------------------------------------------------------------------------
    @staticmethod
    def webhook(doctype: str, name: str, secret: str, *, body: Any = None,
                modified: str | None = None) -> tuple[dict[str, str], bytes]:
        """Headers and raw body of a delivery as Frappe sends it: the body is ``json.dumps`` of
        the webhook's data (by default ``{"doctype", "name"}``, plus ``modified`` when given, as
        docs/connectors.md has the webhook's JSON send it), and ``X-Frappe-Webhook-Signature``
        its base64 HMAC-SHA256 with ``secret`` (a wrong secret gives a forged one; sending the
        same pair twice is a replay)."""
        data = body if body is not None else {"doctype": doctype, "name": name,
                                              **({"modified": modified} if modified else {})}
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        signature = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()
        return {"Content-Type": "application/json", "X-Frappe-Webhook-Signature": signature}, raw
