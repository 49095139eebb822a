"""Email templates: CRUD, save-time validation and preview (docs/email.md, "Templates").

At save, each part (subject, HTML, text) is parsed in the sandbox: a syntax error, a
name that is not a template variable (crm/email/variables.py NAMES), an attribute that
no customer has (``customer.nme``: found by rendering against a sample customer built
from the customer schema), a sandbox escape (``__class__``, ``mro``...) or a loop past
the limits is 422 naming the part (``field``) and the ``line``. A marketing template
must use ``{{ unsubscribe_url }}`` and ``{{ postal_address }}``. The HTML's ``<style>``
rules are inlined (css_inline), the text part derived from the HTML when not given
(crm/email/text.py).

Storage: ``T#<tenant>#TEMPLATES`` / ``<template id>`` (one Query lists them in id order,
oldest first).
"""

from __future__ import annotations

import re
import traceback
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.sandbox import SecurityError
from ulid import ULID

from crm import clock, retry
from crm.context import TenantContext
from crm.email import render, variables
from crm.email.schemas_templates import (
    TEMPLATE_ID_PATTERN,
    Template,
    TemplateCreate,
    TemplatePatch,
    TemplatePreview,
)
from crm.errors import Conflict, Invalid, NotFound, stale_version
from crm.paging import Page
from crm.storage import TemplateItem, condition_failed

TEMPLATE_ID = re.compile(TEMPLATE_ID_PATTERN)
MAX_TEMPLATES = 500  # per tenant
SAVE_RENDER_SECONDS = 1.0  # the sample render at save, per part
POSTAL_PLACEHOLDER = "[your postal address: set it with PUT /v1/email/settings]"
# attributes no template needs and every escape uses (the sandbox refuses them at render too)
UNSAFE_ATTRIBUTES = {
    "mro", "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "f_globals", "f_locals",
    "f_builtins", "f_back", "f_code", "tb_frame", "tb_next", "func_globals", "func_code", "im_func", "im_self",
    "co_code", "format_map",
}  # fmt: skip
_UNSUPPORTED = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


def list_pk(ctx: TenantContext) -> str:
    return ctx.key("TEMPLATES")


def new_id() -> str:
    return f"tpl_{ULID()}"


# --- validation ------------------------------------------------------------------------


def _invalid(part: str, message: str, code: str, line: int | None) -> Invalid:
    where = f"{part}, line {line}" if line else part
    return Invalid(f"{where}: {message}", field=part, code=code, line=line)


def _parse(part: str, source: str, html: bool) -> nodes.Template:
    try:
        return render.environment(html).parse(source)
    except TemplateSyntaxError as exc:
        raise _invalid(part, f"syntax error: {exc.message}", "template_syntax", exc.lineno) from None


def _first_line(ast: nodes.Template, name: str) -> int | None:
    for node in ast.find_all(nodes.Name):
        if node.name == name:
            return node.lineno
    return None


def _unsafe_attribute(attr: Any) -> bool:
    return isinstance(attr, str) and (attr.startswith("_") or attr in UNSAFE_ATTRIBUTES)


def _static_checks(part: str, ast: nodes.Template) -> None:
    """Unknown names, unsupported tags, sandbox escapes and loops visible in the source."""
    unknown = sorted(meta.find_undeclared_variables(ast) - set(variables.NAMES) - {"range", "dict", "namespace",
                                                                                      "cycler", "joiner",
                                                                                      render.LOOP_TICK})  # fmt: skip
    if unknown:
        name = unknown[0]
        raise _invalid(
            part,
            f"unknown variable {name!r}: a template sees {', '.join(variables.NAMES)}",
            "unknown_variable",
            _first_line(ast, name),
        )
    for tag in ast.find_all(_UNSUPPORTED):
        raise _invalid(part, "include, import and extends are not supported", "template_unsupported", tag.lineno)
    node: Any
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Call)):
        names: list[Any] = []
        if isinstance(node, nodes.Getattr):
            names.append(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            names.append(node.arg.value)
        elif isinstance(node, nodes.Filter | nodes.Call):
            names += [a.value for a in node.args if isinstance(a, nodes.Const)]
            names += [k.value.value for k in node.kwargs if isinstance(k.value, nodes.Const)]
            if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range":
                _static_range(part, node)
            if isinstance(node, nodes.Filter) and node.name not in ("attr", "map", "selectattr", "rejectattr",
                                                                       "sort", "groupby", "unique", "sum",
                                                                       "min", "max"):  # fmt: skip
                names = []  # other filters' constants are data, not attribute names
            if isinstance(node, nodes.Call) and not isinstance(node.node, nodes.Name):
                names = []
        for name in names:
            if _unsafe_attribute(name):
                raise _invalid(
                    part,
                    f"access to {name!r} is refused (the template sandbox allows data, not internals)",
                    "template_unsafe",
                    node.lineno,
                )


def _static_range(part: str, node: nodes.Call) -> None:
    try:
        args = [a.as_const() for a in node.args]
    except nodes.Impossible:
        return
    if all(isinstance(a, int) for a in args) and 1 <= len(args) <= 3:
        try:
            size = len(range(*args))
        except (ValueError, OverflowError):
            return
        if size > render.MAX_RANGE:
            raise _invalid(
                part, f"range() of {size} items: loops are limited to {render.MAX_RANGE}", "template_limit", node.lineno
            )


def _template_line(exc: BaseException) -> int | None:
    """The template line a render error happened on (jinja2 rewrites its traceback so
    that the template's frames carry the template's line numbers)."""
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == render.TEMPLATE_FILE:
            line = lineno
    return line


def render_error(part: str, exc: Exception) -> Invalid:
    """A render error as a 422 naming the part and the line."""
    line = _template_line(exc)
    if isinstance(exc, UndefinedError):
        return _invalid(part, f"unknown variable or attribute: {exc.message}", "unknown_variable", line)
    if isinstance(exc, SecurityError):
        code = "template_limit" if isinstance(exc, render.TemplateLimit) else "template_unsafe"
        return _invalid(part, f"refused by the template sandbox: {exc}", code, line)
    return _invalid(part, f"render error: {exc}", "render_error", line)


def _sample_value(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> Any:
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _sample_value(options[0], defs, depth) if options else None
    if "allOf" in schema and "type" not in schema:
        return _sample_value(schema["allOf"][0], defs, depth)
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        if depth > 6:
            return _AnyKeys()
        props = schema.get("properties")
        if props:
            return {k: _sample_value(v, defs, depth + 1) for k, v in props.items()}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and any(k in extra for k in ("type", "$ref", "anyOf", "properties")):
            return _AnyKeys(_sample_value(extra, defs, depth + 1))
        return _AnyKeys()
    if kind == "array":
        items = schema.get("items") or {}
        return [_sample_value(items, defs, depth + 1)] if depth <= 6 else []
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if schema.get("format") == "date-time":
        return "2026-01-01T09:00:00Z"
    if schema.get("format") == "date":
        return "1990-02-28"
    return "sample"


class _AnyKeys(dict[str, Any]):
    """A free-form object (attributes, an event) at save: any key is there, holding
    ``value`` (None: another free-form object, so ``event.cart.total`` passes)."""

    def __init__(self, value: Any = None) -> None:
        super().__init__()
        self._value = value

    def __missing__(self, key: Any) -> Any:
        return _AnyKeys() if self._value is None else self._value


@lru_cache(maxsize=1)
def _sample_customer() -> dict[str, Any]:
    from crm.customers.schemas import Customer

    schema = Customer.model_json_schema(mode="serialization")
    sample = _sample_value(schema, schema.get("$defs", {}))
    sample["loyalty"] = {"balance": 1, "tier": "sample"}
    return sample


def sample_variables() -> dict[str, Any]:
    values = variables.build(_sample_customer(), {"id": "t000000000000", "name": "sample"}, None, "https://x/u", "s")
    values["event"] = _AnyKeys()  # a journey's event: any field (build makes an empty one {})
    return values


def inline_css(html: str) -> str:
    """css_inline on a template: jinja2 tags are set aside first (as comments between
    elements, as plain tokens inside a tag) so that the HTML parser neither escapes
    ``{{ a < b }}`` nor moves ``{% for %}`` out of a ``<table>``."""
    import css_inline

    saved: list[str] = []

    def protect(match: re.Match[str]) -> str:
        saved.append(match.group(0))
        n = len(saved) - 1
        before = html[: match.start()]
        inside_tag = before.rfind("<") > before.rfind(">")
        return f"jinjaph{n}x" if inside_tag else f"<!--jinjaph{n}x-->"

    masked = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", protect, html, flags=re.DOTALL)
    out = css_inline.inline(masked)
    for n, original in enumerate(saved):
        for token in (f'jinjaph{n}x=""', f"<!--jinjaph{n}x-->", f"jinjaph{n}x"):
            out = out.replace(token, original)
    return out


def validate(kind: str, subject: str, html: str, text: str | None) -> tuple[str, str, bool]:
    """The HTML with its CSS inlined, the text part and whether it was derived; 422 on
    any error (see the module's docstring)."""
    from crm.email import text as text_part

    parts = {"subject": (subject, False), "html": (html, True)}
    if text is not None:
        parts["text"] = (text, False)
    trees = {}
    for part, (source, is_html) in parts.items():
        trees[part] = _parse(part, source, is_html)
        _static_checks(part, trees[part])
    if kind == "marketing":
        for part in ("html", "text") if text is not None else ("html",):
            used = {n.name for n in trees[part].find_all(nodes.Name)}
            for name in variables.REQUIRED_FOR_MARKETING:
                if name not in used:
                    raise _invalid(
                        part,
                        f"a marketing template must contain {{{{ {name} }}}} (the recipient's one-click "
                        "unsubscribe link and the sender's postal address)",
                        "missing_required_variable",
                        None,
                    )
    try:
        inlined = inline_css(html)
    except ValueError as exc:
        raise _invalid("html", f"the CSS could not be inlined: {exc}", "invalid_css", None) from None
    _parse("html", inlined, True)
    derived = text is None
    if derived:
        text = text_part.from_html(html)
        try:
            render.environment(False).parse(text)
        except TemplateSyntaxError:
            raise _invalid(
                "text", "the text part derived from the HTML is not a valid template: give one", "text_derivation", None
            ) from None
    assert text is not None
    sample = sample_variables()
    for part, source, is_html in (("subject", subject, False), ("html", html, True), ("text", text, False)):
        try:
            render.run(render.environment(is_html).from_string(source), sample, SAVE_RENDER_SECONDS)
        except (UndefinedError, SecurityError) as exc:
            raise render_error(part, exc) from None
        except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, AttributeError):
            pass  # depends on the data: the sample's values are not the customer's (preview shows it)
    return inlined, text, derived


# --- conversion and reads --------------------------------------------------------------


def to_template(item: TemplateItem) -> Template:
    return Template(
        id=item.template_id,
        name=item.name,
        kind=item.template_kind,  # type: ignore[arg-type]
        subject=item.subject,
        html=item.html,
        source_html=item.source_html or item.html,
        text=item.text,
        text_derived=bool(item.text_derived),
        created_at=item.created_at,
        updated_at=item.updated_at,
        version=int(item.version or 0),
    )


def _not_found(template_id: str) -> NotFound:
    return NotFound(f"template {template_id} not found", code="template_not_found")


def load(ctx: TenantContext, template_id: str) -> TemplateItem:
    """1 GetItem (consistent); 404 ``template_not_found``."""
    if not TEMPLATE_ID.match(template_id):
        raise _not_found(template_id)
    try:
        return TemplateItem.get(list_pk(ctx), template_id, consistent_read=True)
    except TemplateItem.DoesNotExist:
        raise _not_found(template_id) from None


def get(ctx: TenantContext, template_id: str) -> Template:
    return to_template(load(ctx, template_id))


def list_(ctx: TenantContext, cursor: str | None, limit: int) -> Page:
    """1 Query of ``P TEMPLATES`` (by id: oldest first)."""
    from crm.paging import by_sort_key

    rows, nxt = by_sort_key(TemplateItem, list_pk(ctx), "template", TEMPLATE_ID, cursor, limit)
    return Page([to_template(r) for r in rows], nxt)


def _count(ctx: TenantContext) -> int:
    return TemplateItem.count(list_pk(ctx))


# --- writes ----------------------------------------------------------------------------


def create(ctx: TenantContext, body: TemplateCreate) -> Template:
    """Validation (no I/O), 1 Query (COUNT: the tenant's limit), 1 PutItem."""
    html, text, derived = validate(body.kind, body.subject, body.html, body.text)
    if _count(ctx) >= MAX_TEMPLATES:
        raise Conflict(
            f"the tenant has {MAX_TEMPLATES} templates, the most it may have; delete one first",
            code="template_limit",
            limit=MAX_TEMPLATES,
        )
    now, tid = clock.now_iso(), new_id()
    item = TemplateItem(
        list_pk(ctx),
        tid,
        template_id=tid,
        name=body.name,
        template_kind=body.kind,
        subject=body.subject,
        html=html,
        text=text,
        text_derived=derived,
        source_html=body.html,
        created_at=now,
        updated_at=now,
    )
    item.save(condition=TemplateItem.pk.does_not_exist())
    return to_template(item)


def update(ctx: TenantContext, template_id: str, body: TemplatePatch, if_match: int | None = None) -> Template:
    """1 GetItem + 1 PutItem conditional on the version read (a concurrent change: read
    again, or 412 with If-Match). The whole template is validated again."""
    from pynamodb.exceptions import PutError

    given = body.model_fields_set
    for _ in retry.backoff():
        item = load(ctx, template_id)
        if if_match is not None and item.version != if_match:
            raise stale_version(if_match, item.version)
        kind = body.kind or item.template_kind
        subject = body.subject or item.subject
        source = body.html or item.source_html or item.html
        if "text" in given:
            text = body.text
        else:
            text = None if item.text_derived else item.text
        html, text_out, derived = validate(kind, subject, source, text)
        item.name = body.name or item.name
        item.template_kind = kind
        item.subject = subject
        item.source_html = source
        item.html = html
        item.text = text_out
        item.text_derived = derived
        item.updated_at = clock.now_iso()
        try:
            item.save()  # conditional on the version read (VersionAttribute)
            return to_template(item)
        except PutError as exc:
            if not condition_failed(exc):
                raise
            if if_match is not None:
                raise stale_version(if_match, None) from None
    raise Conflict("the template is being changed by many requests at once; retry", code="transaction_conflict")


def delete(ctx: TenantContext, template_id: str, if_match: int | None = None) -> None:
    """1 GetItem + 1 DeleteItem (conditional on the version read)."""
    from pynamodb.exceptions import DeleteError

    item = load(ctx, template_id)
    if if_match is not None and item.version != if_match:
        raise stale_version(if_match, item.version)
    try:
        item.delete()
    except DeleteError as exc:
        if not condition_failed(exc):
            raise
        raise stale_version(if_match if if_match is not None else int(item.version or 0), None) from None


# --- preview ---------------------------------------------------------------------------


def customer_variable(ctx: TenantContext, customer_id: str) -> dict[str, Any]:
    """``customer`` as a template sees it: the customer as ``GET /v1/customers/{id}``
    returns it, plus ``loyalty`` {balance, tier} when the tenant has a program
    (1 BatchGetItem, + 1 GetItem for the program and 1 BatchGetItem for the book)."""
    from crm.customers import service as customers
    from crm.errors import DomainError
    from crm.loyalty import service as loyalty

    customer = customers.get(ctx, customer_id).model_dump(mode="json")
    try:
        loyalty.get_program(ctx)  # 404 without a program: then no loyalty
        book = loyalty.view(ctx, customer["id"])
        customer["loyalty"] = {"balance": book.available, "tier": book.tier}
    except DomainError:
        pass  # no program: no loyalty
    return customer


def preview(ctx: TenantContext, template_id: str, customer_id: str) -> TemplatePreview:
    """The template rendered for one customer with a preview unsubscribe link."""
    from crm import tenants
    from crm.email import links
    from crm.email import settings as email_settings

    item = load(ctx, template_id)
    customer = customer_variable(ctx, customer_id)
    tenant = tenants.get(ctx)
    warnings: list[str] = []
    postal = email_settings.get(ctx).postal_address
    if not postal:
        postal = POSTAL_PLACEHOLDER
        warnings.append("no postal address is set (PUT /v1/email/settings): a placeholder stands in for it")
    values = variables.build(
        customer,
        {"id": tenant.id, "name": tenant.name},
        None,
        links.url(ctx.tenant_id, customer["id"], "preview"),
        postal,
    )
    out: dict[str, str] = {}
    for part, source, is_html in (("subject", item.subject, False), ("html", item.html, True),
                                  ("text", item.text, False)):  # fmt: skip
        key = (item.template_id, int(item.version or 0), part)
        try:
            out[part] = render.run(render._compiled(key, source, is_html), values)
        except TemplateError as exc:
            raise render_error(part, exc) from None
    if item.template_kind == "marketing" and not customer.get("email"):
        warnings.append("the customer has no email address: a campaign would skip them")
    return TemplatePreview(subject=out["subject"].strip(), html=out["html"], text=out["text"], warnings=warnings)
