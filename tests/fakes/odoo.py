"""A fake Odoo server speaking JSON-2 (Odoo 19+) and JSON-RPC (Odoo 17–18).

Written by hand after Odoo's public API documentation (odoo/documentation,
content/developer/reference/external_api.rst for JSON-2 and external_rpc_api.rst for
JSON-RPC, and the shapes of odoo/odoo's controllers): no record or name comes from Odoo's
own demo or test data (LGPL/GPL). The companies, people, products and amounts below are
invented.

Behaviour:
- ``api="json2"`` is an Odoo 19 (``/json/2/<model>/<method>`` plus the deprecated
  ``/jsonrpc``); ``api="jsonrpc"`` an Odoo 17 or 18 (``version``), where ``/json/2/*`` is
  404 like any unknown path.
- JSON-2: ``Authorization: bearer <key>`` (else 401 ``werkzeug.exceptions.Unauthorized``
  "Invalid apikey"), ``X-Odoo-Database`` (another name opens no database: every route is
  404), named arguments in the body (``ids``, ``context``, the method's parameters; an
  unknown one is 422 "got an unexpected keyword argument"), errors as ``{"name",
  "message", "arguments", "context", "debug"}`` with the HTTP status Odoo gives them.
- JSON-RPC: ``common.version``, ``common.authenticate(db, login, key, env)`` (uid, or
  ``false`` for a wrong login or key; a wrong database is a ``psycopg2.OperationalError``),
  ``object.execute_kw(db, uid, key, model, method, args, kwargs)``; errors are HTTP 200
  with ``{"error": {"code": 200, "message": "Odoo Server Error", "data": {…}}}``.
- Models: ``res.partner`` (archived partners are left out of searches, like Odoo's
  ``active`` filter), ``sale.order``, ``sale.order.line``, ``account.move``,
  ``res.company``, ``res.users`` (``context_get``); methods ``search_read`` (domain with
  ``& | !`` prefix operators and ``= != > >= < <= in not in``, ``fields`` — an unknown
  field fails like Odoo's "Invalid field" —, ``order``, ``limit``, ``offset``), ``read``,
  ``search_count``. Many2one fields render as ``[id, display_name]``, empty fields as
  ``false``, times as ``"YYYY-MM-DD HH:MM:SS"`` UTC.
- Test controls: ``add_company`` / ``add_person`` / ``add_order`` / ``add_invoice``,
  ``seed_partners`` / ``seed_orders`` / ``seed_invoices`` (many records sharing one
  ``write_date``), ``touch`` (a later vendor-side change), ``no_api_plan`` (the database's
  plan has no external API), ``max_page_size`` (``search_read`` returns at most that many,
  as the conformance kit asks), and :class:`tests.fakes.FakeVendor`'s ``fail_next`` /
  ``throttle_next`` / counters; ``rpc_calls`` logs every request (api, path, headers, body).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Self

from tests.fakes import FakeVendor, Reply, epoch

DATABASE = "rapport-test"
API_KEY = "5f0c6b1e9d2a47e38c1b0a9f7e6d5c4b3a291807"
LOGIN = "sync-bot@example.com"
UID = 7
BASE_TIME = "2024-03-01T08:00:00Z"
# The wording of Odoo Online's refusal for a plan without API access is not public (its
# SaaS layer is not in odoo/odoo): this follows the documented rule, "Access to data via
# the external API is only available on Custom Odoo pricing plans".
PLAN_MESSAGE = "Access to the external API is only available on the Custom plan. Upgrade your subscription."

CURRENCIES = {1: "EUR", 2: "USD", 3: "JPY"}
COUNTRIES = {1: ("Belgium", "BE"), 2: ("Germany", "DE"), 3: ("United States", "US")}
STATES = {1: "California"}
TERMS = {1: "Immediate Payment", 2: "30 Days", 3: "45 Days End of Month"}
PRODUCTS = {
    1: ("DESK-OAK", "Standing desk, oak"),
    2: ("CHAIR-ERG", "Ergonomic chair"),
    3: (False, "Assembly service"),
    4: ("LAMP-01", "Desk lamp"),
}

FIELDS: dict[str, set[str]] = {
    "res.partner": {
        "id",
        "name",
        "display_name",
        "is_company",
        "parent_id",
        "commercial_partner_id",
        "type",
        "function",
        "email",
        "phone",
        "street",
        "street2",
        "city",
        "zip",
        "state_id",
        "country_id",
        "country_code",
        "vat",
        "company_registry",
        "website",
        "ref",
        "lang",
        "category_id",
        "property_payment_term_id",
        "credit_limit",
        "active",
        "customer_rank",
        "child_ids",
        "create_date",
        "write_date",
    },
    "sale.order": {
        "id",
        "name",
        "display_name",
        "state",
        "partner_id",
        "date_order",
        "currency_id",
        "amount_untaxed",
        "amount_tax",
        "amount_total",
        "order_line",
        "client_order_ref",
        "create_date",
        "write_date",
    },
    "sale.order.line": {
        "id",
        "order_id",
        "product_id",
        "name",
        "product_uom_qty",
        "price_unit",
        "discount",
        "price_subtotal",
        "price_total",
        "display_type",
        "create_date",
        "write_date",
    },
    "account.move": {
        "id",
        "name",
        "display_name",
        "move_type",
        "state",
        "payment_state",
        "partner_id",
        "commercial_partner_id",
        "currency_id",
        "invoice_date",
        "invoice_date_due",
        "invoice_payment_term_id",
        "amount_untaxed",
        "amount_tax",
        "amount_total",
        "amount_residual",
        "invoice_origin",
        "create_date",
        "write_date",
    },
    "res.company": {"id", "name", "currency_id", "create_date", "write_date"},
}
MANY2ONE: dict[str, dict[str, str]] = {
    "res.partner": {
        "parent_id": "res.partner",
        "commercial_partner_id": "res.partner",
        "state_id": "state",
        "country_id": "country",
        "property_payment_term_id": "term",
    },
    "sale.order": {"partner_id": "res.partner", "currency_id": "currency"},
    "sale.order.line": {"order_id": "sale.order", "product_id": "product"},
    "account.move": {
        "partner_id": "res.partner",
        "commercial_partner_id": "res.partner",
        "currency_id": "currency",
        "invoice_payment_term_id": "term",
    },
    "res.company": {"currency_id": "currency"},
}
DEFAULT_ORDER = {
    "res.partner": "name asc, id desc",
    "sale.order": "date_order desc, id desc",
    "account.move": "invoice_date desc, name desc, id desc",
}


def odoo_time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


class OdooFault(Exception):
    """An exception the fake Odoo raises, rendered in Odoo's error shapes."""

    def __init__(self, name: str, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.name, self.message, self.status = name, message, status


class FakeOdoo(FakeVendor):
    def __init__(
        self,
        api: str = "json2",
        version: str | None = None,
        database: str = DATABASE,
        api_key: str = API_KEY,
        login: str = LOGIN,
    ) -> None:
        super().__init__()
        assert api in ("json2", "jsonrpc")
        self.api = api
        self.version = version or ("19.0" if api == "json2" else "17.0")
        self.database, self.key, self.login = database, api_key, login
        self.now = epoch(BASE_TIME)
        self.plan_allows_api = True
        self.tables: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in FIELDS}
        self._next = {m: 1 for m in FIELDS}
        self.rpc_calls: list[dict[str, Any]] = []  # with the body (the base's ``calls`` has none)
        self.tables["res.company"][1] = {
            "id": 1,
            "name": "Rapport Test Company",
            "currency_id": 1,
            "create_date": odoo_time(self.now),
            "write_date": odoo_time(self.now),
        }
        self._next["res.company"] = 2

    # controls --------------------------------------------------------------------------
    def no_api_plan(self, on: bool = True) -> None:
        """The database's plan has no external API access (Odoo Online One App Free/Standard)."""
        self.plan_allows_api = not on

    def tick(self) -> str:
        with self.lock:
            self.now += 1
            return odoo_time(self.now)

    def _stamp(self, write_date: str | None) -> str:
        if write_date is None:
            return self.tick()
        with self.lock:
            self.now = max(self.now, epoch(write_date))
        return odoo_time(epoch(write_date))

    def _insert(self, model: str, values: dict[str, Any], write_date: str | None) -> int:
        with self.lock:
            rid = self._next[model]
            self._next[model] += 1
            stamp = self._stamp(write_date)
            self.tables[model][rid] = {"id": rid, "create_date": stamp, "write_date": stamp, **values}
            return rid

    def add_company(self, name: str, *, write_date: str | None = None, **values: Any) -> int:
        """A company (``is_company``): an account. ``values`` are res.partner fields."""
        base = {
            "name": name,
            "is_company": True,
            "parent_id": False,
            "type": "contact",
            "function": False,
            "email": False,
            "phone": False,
            "street": False,
            "street2": False,
            "city": False,
            "zip": False,
            "state_id": False,
            "country_id": False,
            "vat": False,
            "company_registry": False,
            "website": False,
            "ref": False,
            "lang": "en_US",
            "category_id": [],
            "property_payment_term_id": False,
            "credit_limit": 0.0,
            "active": True,
            "customer_rank": 1,
        }
        return self._insert("res.partner", {**base, **values}, write_date)

    def add_person(self, name: str, *, parent: int | None = None, write_date: str | None = None, **values: Any) -> int:
        """A person; with ``parent`` a contact of that company (``function`` is the role)."""
        base = {
            "name": name,
            "is_company": False,
            "parent_id": parent or False,
            "type": "contact",
            "function": False,
            "email": False,
            "phone": False,
            "street": False,
            "street2": False,
            "city": False,
            "zip": False,
            "state_id": False,
            "country_id": False,
            "vat": False,
            "company_registry": False,
            "website": False,
            "ref": False,
            "lang": "en_US",
            "category_id": [],
            "property_payment_term_id": False,
            "credit_limit": 0.0,
            "active": True,
            "customer_rank": 0,
        }
        return self._insert("res.partner", {**base, **values}, write_date)

    def seed_partners(self, count: int, *, write_date: str, parent: int | None = None) -> list[int]:
        """``count`` people sharing one ``write_date`` (a bulk import does this)."""
        return [
            self.add_person(
                f"Person {i:05d} Example", parent=parent, write_date=write_date, email=f"person.{i}@example.com"
            )
            for i in range(count)
        ]

    def add_order(
        self,
        partner: int,
        lines: list[tuple[int, float, float]] | None = None,
        *,
        state: str = "sale",
        currency: int = 1,
        tax_rate: float = 0.21,
        write_date: str | None = None,
        date_order: str | None = None,
        discounts: list[float] | None = None,
        **values: Any,
    ) -> int:
        """A sale order with ``lines`` of ``(product, quantity, unit price)`` (and a line
        discount % per line in ``discounts``); amounts computed like Odoo's (rounded to the
        currency); tax ``tax_rate`` of the untaxed amount."""
        lines = lines if lines is not None else [(1, 2, 499.0), (2, 1, 189.5)]
        digits = 0 if CURRENCIES[currency] == "JPY" else 2
        with self.lock:
            oid = self._insert(
                "sale.order",
                {
                    "name": "",
                    "state": state,
                    "partner_id": partner,
                    "currency_id": currency,
                    "order_line": [],
                    "client_order_ref": False,
                },
                write_date,
            )
            order = self.tables["sale.order"][oid]
            order["name"] = f"SO{oid:05d}"
            order["date_order"] = date_order or order["create_date"]
            untaxed = 0.0
            for n, (product, qty, price) in enumerate(lines):
                pct = (discounts or [])[n] if discounts and n < len(discounts) else 0.0
                subtotal = round(qty * price * (1 - pct / 100), digits)
                untaxed += subtotal
                lid = self._insert(
                    "sale.order.line",
                    {
                        "order_id": oid,
                        "product_id": product,
                        "name": PRODUCTS[product][1],
                        "product_uom_qty": qty,
                        "price_unit": price,
                        "discount": pct,
                        "price_subtotal": subtotal,
                        "price_total": round(subtotal * (1 + tax_rate), digits),
                        "display_type": False,
                    },
                    order["write_date"],
                )
                order["order_line"].append(lid)
            untaxed = round(untaxed, digits)
            tax = round(untaxed * tax_rate, digits)
            order.update(amount_untaxed=untaxed, amount_tax=tax, amount_total=round(untaxed + tax, digits), **values)
            return oid

    def seed_orders(self, count: int, partner: int, *, write_date: str) -> list[int]:
        return [self.add_order(partner, [(4, 1, 35.0)], write_date=write_date) for _ in range(count)]

    def add_invoice(
        self,
        partner: int,
        amount_untaxed: float = 1000.0,
        *,
        move_type: str = "out_invoice",
        state: str = "posted",
        payment_state: str = "not_paid",
        residual: float | None = None,
        currency: int = 1,
        tax_rate: float = 0.21,
        term: int | bool = 2,
        invoice_date: str = "2024-02-20",
        due: str | bool = "2024-03-21",
        write_date: str | None = None,
        **values: Any,
    ) -> int:
        tax = round(amount_untaxed * tax_rate, 2)
        total = round(amount_untaxed + tax, 2)
        partner_row = self.tables["res.partner"][partner]
        commercial = partner_row["parent_id"] or partner
        with self.lock:
            mid = self._insert(
                "account.move",
                {
                    "name": "/",
                    "move_type": move_type,
                    "state": state,
                    "payment_state": payment_state,
                    "partner_id": partner,
                    "commercial_partner_id": commercial,
                    "currency_id": currency,
                    "invoice_date": invoice_date if state != "draft" else False,
                    "invoice_date_due": due,
                    "invoice_payment_term_id": term or False,
                    "amount_untaxed": amount_untaxed,
                    "amount_tax": tax,
                    "amount_total": total,
                    "amount_residual": total if residual is None else residual,
                    "invoice_origin": False,
                },
                write_date,
            )
            move = self.tables["account.move"][mid]
            if state != "draft":
                prefix = "RINV" if move_type == "out_refund" else "INV"
                move["name"] = f"{prefix}/2024/{mid:05d}"
            move.update(values)
            return mid

    def seed_invoices(self, count: int, partner: int, *, write_date: str) -> list[int]:
        return [self.add_invoice(partner, 100.0, write_date=write_date) for _ in range(count)]

    def add_move(self, move_type: str, partner: int, *, write_date: str | None = None) -> int:
        """Another kind of journal entry (a vendor bill ``in_invoice``, an ``entry``)."""
        return self.add_invoice(partner, 50.0, move_type=move_type, write_date=write_date)

    def touch(self, model: str, rid: int, *, write_date: str | None = None, **changes: Any) -> str:
        """Change a record vendor-side; its ``write_date`` moves to the vendor clock (or as given)."""
        with self.lock:
            row = self.tables[model][rid]
            row.update(changes)
            row["write_date"] = self._stamp(write_date)
            return str(row["write_date"])

    # rendering -------------------------------------------------------------------------
    def _display(self, relation: str, rid: int) -> str:
        if relation == "res.partner":
            row = self.tables["res.partner"][rid]
            parent = row.get("parent_id")
            if parent:
                return f"{self.tables['res.partner'][parent]['name']}, {row['name']}"
            return str(row["name"])
        if relation == "sale.order":
            return str(self.tables["sale.order"][rid]["name"])
        if relation == "currency":
            return CURRENCIES[rid]
        if relation == "country":
            return COUNTRIES[rid][0]
        if relation == "state":
            return STATES[rid]
        if relation == "term":
            return TERMS[rid]
        if relation == "product":
            code, name = PRODUCTS[rid]
            return f"[{code}] {name}" if code else name
        raise KeyError(relation)

    def _value(self, model: str, row: dict[str, Any], field: str) -> Any:
        if model == "res.partner" and field == "commercial_partner_id":
            rid = row.get("parent_id") or row["id"]
            return [rid, self._display("res.partner", rid)]
        if model == "res.partner" and field == "country_code":
            return COUNTRIES[row["country_id"]][1] if row.get("country_id") else False
        if model == "res.partner" and field == "child_ids":
            return [r["id"] for r in self.tables["res.partner"].values() if r.get("parent_id") == row["id"]]
        if field == "display_name":
            return self._display(model if model in ("res.partner", "sale.order") else "res.partner", row["id"])
        raw = row.get(field, False)
        relation = MANY2ONE.get(model, {}).get(field)
        if relation and raw:
            return [raw, self._display(relation, raw)]
        return raw

    def _raw(self, model: str, row: dict[str, Any], field: str) -> Any:
        """A field's value as domains compare it (a many2one is its id)."""
        if model == "res.partner" and field == "commercial_partner_id":
            return row.get("parent_id") or row["id"]
        if model == "res.partner" and field == "country_code":
            return self._value(model, row, field)
        return row.get(field, False)

    # the ORM ---------------------------------------------------------------------------
    def _check_fields(self, model: str, fields: list[str] | None) -> list[str]:
        known = FIELDS[model]
        wanted = list(fields) if fields else sorted(known)
        for f in wanted:
            if f not in known:
                raise OdooFault("builtins.ValueError", f"Invalid field '{f}' on model '{model}'", 500)
        return wanted

    def _match(self, model: str, row: dict[str, Any], domain: list[Any]) -> bool:
        stack: list[bool] = []
        for term in reversed(domain or []):
            if term in ("&", "|"):
                first, second = stack.pop(), stack.pop()  # both operands, always
                stack.append(first and second if term == "&" else first or second)
            elif term == "!":
                stack.append(not stack.pop())
            else:
                stack.append(self._term(model, row, term))
        return all(stack)

    def _term(self, model: str, row: dict[str, Any], term: Any) -> bool:
        if not isinstance(term, (list, tuple)) or len(term) != 3:
            raise OdooFault("builtins.ValueError", f"Invalid leaf {term!r}", 500)
        field, op, value = term
        if field not in FIELDS[model]:
            raise OdooFault("builtins.ValueError", f"Invalid field {model}.{field} in leaf {term!r}", 500)
        have = self._raw(model, row, field)
        if op == "=":
            return bool(have == value)
        if op == "!=":
            return bool(have != value)
        if op == "in":
            return have in value
        if op == "not in":
            return have not in value
        if have is False or have is None:
            return False
        if op == ">":
            return bool(have > value)
        if op == ">=":
            return bool(have >= value)
        if op == "<":
            return bool(have < value)
        if op == "<=":
            return bool(have <= value)
        raise OdooFault("builtins.ValueError", f"Invalid operator {op!r}", 500)

    def _sort(self, model: str, rows: list[dict[str, Any]], order: str | None) -> list[dict[str, Any]]:
        spec = order or DEFAULT_ORDER.get(model, "id asc")
        for part in reversed([p.strip() for p in spec.split(",") if p.strip()]):
            words = part.split()
            field, direction = words[0], (words[1].lower() if len(words) > 1 else "asc")
            if field not in FIELDS[model] or direction not in ("asc", "desc"):
                raise OdooFault("builtins.ValueError", f'Invalid "order" specified ({spec})', 500)
            rows.sort(
                key=lambda r, f=field: (self._raw(model, r, f) is False, self._raw(model, r, f) or 0),
                reverse=direction == "desc",
            )
        return rows

    def _search(
        self, model: str, domain: list[Any] | None, offset: int = 0, limit: int | None = None, order: str | None = None
    ) -> list[dict[str, Any]]:
        domain = list(domain or [])
        mentions_active = any(isinstance(t, (list, tuple)) and t and t[0] == "active" for t in domain)
        rows = [
            r
            for r in self.tables[model].values()
            if (mentions_active or r.get("active", True)) and self._match(model, r, domain)
        ]
        rows = self._sort(model, rows, order)[offset or 0 :]
        return rows[:limit] if limit else rows

    def _render(self, model: str, rows: list[dict[str, Any]], fields: list[str] | None) -> list[dict[str, Any]]:
        wanted = self._check_fields(model, fields)
        return [{"id": r["id"], **{f: self._value(model, r, f) for f in wanted if f != "id"}} for r in rows]

    def execute(self, model: str, method: str, ids: list[int] | None, kwargs: dict[str, Any]) -> Any:
        if model == "res.users" and method == "context_get":
            return {"lang": "en_US", "tz": "Europe/Brussels", "uid": UID}
        if model not in FIELDS:
            raise OdooFault("werkzeug.exceptions.NotFound", f"the model {model!r} does not exist", 404)
        allowed = {
            "search_read": {"domain", "fields", "offset", "limit", "order"},
            "read": {"fields", "load"},
            "search_count": {"domain", "limit"},
        }
        if method not in allowed:
            raise OdooFault(
                "werkzeug.exceptions.NotFound", f"The method '{method}' does not exist on the model '{model}'", 404
            )
        unexpected = set(kwargs) - allowed[method]
        if unexpected:
            raise OdooFault(
                "werkzeug.exceptions.UnprocessableEntity",
                f"got an unexpected keyword argument '{min(unexpected)}'",
                422,
            )
        with self.lock:
            if method == "search_read":
                limit = kwargs.get("limit")
                if self.max_page_size and model not in ("res.company",):  # the kit's cap (fakes.md)
                    limit = self.page_size(limit) if limit else self.max_page_size
                rows = self._search(model, kwargs.get("domain"), kwargs.get("offset") or 0, limit, kwargs.get("order"))
                return self._render(model, rows, kwargs.get("fields"))
            if method == "search_count":
                return len(self._search(model, kwargs.get("domain")))
            table = self.tables[model]
            missing = [i for i in ids or [] if i not in table]
            if missing:
                raise OdooFault(
                    "odoo.exceptions.MissingError",
                    f"Record does not exist or has been deleted.\n(Record: {model}({missing[0]},), User: {UID})",
                    404,
                )
            return self._render(model, [table[i] for i in ids or []], kwargs.get("fields"))

    # HTTP ------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self.start()

    def route(self, method: str, path: str, query: dict[str, str], headers: Any) -> Reply:
        raw = self.request_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        call = {
            "api": "json2" if path.startswith("/json/2/") else "jsonrpc" if path == "/jsonrpc" else None,
            "method": method,
            "path": path,
            "headers": {k.lower(): v for k, v in headers.items()},
            "body": body,
        }
        with self.lock:
            self.rpc_calls.append(call)
        if method == "POST" and path.startswith("/json/2/") and self.api == "json2":
            return self._json2(path, headers, body)
        if method == "POST" and path == "/jsonrpc" and self.api in ("json2", "jsonrpc"):
            return self._jsonrpc(body)
        return Reply(404, None)

    @staticmethod
    def _error_body(fault: OdooFault) -> dict[str, Any]:
        return {
            "name": fault.name,
            "message": fault.message,
            "arguments": [fault.message, fault.status],
            "context": {},
            "debug": "Traceback (most recent call last):\n" + '  File "odoo/http.py", '
            "line 2212, in _transactioning\n" * 6 + f"{fault.name}: {fault.message}\n",
        }

    def _json2(self, path: str, headers: Any, body: Any) -> Reply:
        parts = path.split("/")
        if len(parts) != 5 or not parts[3] or not parts[4]:
            fault = OdooFault("werkzeug.exceptions.NotFound", "Did you mean POST /json/2/<model>/<method>?", 404)
            return Reply(404, self._error_body(fault))
        if (headers.get("X-Odoo-Database") or self.database) != self.database:
            return Reply(404, None)  # no database opened: the route does not exist
        auth = headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        try:
            if scheme.lower() != "bearer" or token.strip() != self.key:
                raise OdooFault("werkzeug.exceptions.Unauthorized", "Invalid apikey", 401)
            if not self.plan_allows_api:
                raise OdooFault("odoo.exceptions.AccessDenied", PLAN_MESSAGE, 403)
            if body is not None and not isinstance(body, dict):
                raise OdooFault("werkzeug.exceptions.BadRequest", "could not parse the body as json", 400)
            kwargs = dict(body or {})
            ids = kwargs.pop("ids", None)
            kwargs.pop("context", None)
            return Reply(200, self.execute(parts[3], parts[4], ids, kwargs))
        except OdooFault as fault:
            return Reply(fault.status, self._error_body(fault))

    def _jsonrpc(self, body: Any) -> Reply:
        request_id = body.get("id") if isinstance(body, dict) else None
        try:
            params = body["params"]
            service, method, args = params["service"], params["method"], list(params.get("args") or [])
            return Reply(200, {"jsonrpc": "2.0", "id": request_id, "result": self._rpc(service, method, args)})
        except OdooFault as fault:
            data = {
                "name": fault.name,
                "debug": self._error_body(fault)["debug"],
                "message": fault.message,
                "arguments": [fault.message],
                "context": {},
            }
            error = {
                "code": 404 if fault.status == 404 and fault.name.endswith("NotFound") else 200,
                "message": "404: Not Found" if fault.name.endswith("NotFound") else "Odoo Server Error",
                "data": data,
            }
            return Reply(200, {"jsonrpc": "2.0", "id": request_id, "error": error})
        except (KeyError, TypeError):
            return Reply(
                200,
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "error": {
                        "code": 200,
                        "message": "Odoo Server Error",
                        "data": {
                            "name": "builtins.KeyError",
                            "message": "params",
                            "arguments": ["params"],
                            "context": {},
                        },
                    },
                },
            )

    def _open(self, db: Any) -> None:
        if db != self.database:
            raise OdooFault(
                "psycopg2.OperationalError",
                "connection to server on socket "
                f'"/var/run/postgresql/.s.PGSQL.5432" failed: FATAL:  database "{db}" does not exist\n',
            )

    def _rpc(self, service: str, method: str, args: list[Any]) -> Any:
        if service == "common" and method == "version":
            major = int(self.version.split(".")[0])
            return {
                "server_version": self.version,
                "server_version_info": [major, 0, 0, "final", 0, ""],
                "server_serie": self.version,
                "protocol_version": 1,
            }
        if service == "common" and method in ("authenticate", "login"):
            self._open(args[0])
            if not self.plan_allows_api:
                raise OdooFault("odoo.exceptions.AccessDenied", PLAN_MESSAGE)
            return UID if args[1] == self.login and args[2] == self.key else False
        if service == "object" and method == "execute_kw":
            db, uid, key, model, name = args[:5]
            positional = args[5] if len(args) > 5 else []
            kwargs = dict(args[6]) if len(args) > 6 and args[6] else {}
            self._open(db)
            if not self.plan_allows_api:
                raise OdooFault("odoo.exceptions.AccessDenied", PLAN_MESSAGE)
            if uid != UID or key != self.key:
                raise OdooFault("odoo.exceptions.AccessDenied", "Access Denied")
            ids = None
            if name in ("read",):
                ids = positional[0] if positional else kwargs.pop("ids", [])
                if len(positional) > 1:
                    kwargs["fields"] = positional[1]
            elif name in ("search_read", "search_count") and positional:
                kwargs["domain"] = positional[0]
            kwargs.pop("context", None)
            return self.execute(model, name, ids, kwargs)
        raise OdooFault("builtins.NameError", f"{service}.{method} is not a method")
