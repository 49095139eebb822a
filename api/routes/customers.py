"""/v1/customers: profiles, lookups, batch upsert, timeline and the 360 view."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "customers"
READ, WRITE = "customers:read", "customers:write"


def _etag(customer: Any) -> dict[str, str]:
    return {"ETag": f'"{customer.version}"'}


@endpoint(
    bp,
    "/v1/customers",
    "POST",
    operation_id="createCustomer",
    tag=TAG,
    scope=WRITE,
    summary="Create a customer (409 names the existing customer on a duplicate email or external id)",
    body="CustomerCreate",
    responses={201: "Customer"},
    errors=(409,),
    idempotent=True,
)
def create_customer(req: Request) -> Result:
    from crm.customers import service

    customer = service.create(req.ctx, req.body)
    return Result(201, customer, {**_etag(customer), "Location": f"/v1/customers/{customer.id}"})


@endpoint(
    bp,
    "/v1/customers",
    "GET",
    operation_id="listCustomers",
    tag=TAG,
    scope=READ,
    summary="List customers by id, or by change time with updated_since; filter by tag",
    query="CustomerListQuery",
    responses={200: "CustomerPage"},
)
def list_customers(req: Request) -> Result:
    from crm.customers import service

    q = req.query
    page = service.list_customers(req.ctx, limit=q.limit, cursor=q.cursor, tag=q.tag, updated_since=q.updated_since)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    "/v1/customers/lookup",
    "GET",
    operation_id="lookupCustomers",
    tag=TAG,
    scope=READ,
    summary="Exact lookup by email, by phone, or by source + external_id",
    query="CustomerLookupQuery",
    responses={200: "CustomerList"},
)
def lookup_customers(req: Request) -> Result:
    from crm.customers import service

    q = req.query
    found = service.lookup(req.ctx, email=q.email, phone=q.phone, source=q.source, external_id=q.external_id)
    return Result(200, {"data": found})


@endpoint(
    bp,
    "/v1/customers/search",
    "GET",
    operation_id="searchCustomers",
    tag=TAG,
    scope=READ,
    summary="Find customers by a prefix of given or family name, email or phone (1 Query + 1 BatchGetItem a page)",
    query="CustomerSearchQuery",
    responses={200: "CustomerPage"},
)
def search_customers(req: Request) -> Result:
    from crm.customers import search

    q = req.query
    page = search.search(req.ctx, q.q, limit=q.limit, cursor=q.cursor)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    "/v1/customers/batch",
    "POST",
    operation_id="batchUpsertCustomers",
    tag=TAG,
    scope=WRITE,
    summary="Upsert up to 100 customers, matched by external id or email",
    body="BatchUpsertRequest",
    responses={200: "BatchUpsertResponse"},
    idempotent=True,
    max_body=1024 * 1024,
)
def batch_upsert(req: Request) -> Result:
    from crm.customers import batch

    results = batch.upsert(req.ctx, req.body.records)
    out = []
    for r in results:
        entry = {"index": r.index, "status": r.status, "id": r.id}
        if r.error is not None:
            extra = dict(r.error.extra)
            entry["error"] = {
                "code": extra.pop("code", r.error.code),
                "detail": r.error.detail,
                "field": r.error.field,
                "errors": r.errors,
                **extra,
            }
        out.append(entry)
    counts = {s: sum(1 for r in results if r.status == s) for s in ("created", "updated", "unchanged", "error")}
    return Result(
        200,
        {
            "results": out,
            "created": counts["created"],
            "updated": counts["updated"],
            "unchanged": counts["unchanged"],
            "failed": counts["error"],
        },
    )


@endpoint(
    bp,
    "/v1/customers/{customer_id}",
    "GET",
    operation_id="getCustomer",
    tag=TAG,
    scope=READ,
    summary="Get a customer (an erased one is a tombstone)",
    responses={200: "Customer"},
    errors=(404,),
)
def get_customer(req: Request) -> Result:
    from crm.customers import service

    customer = service.get(req.ctx, req.params["customer_id"])
    headers = _etag(customer)
    if customer.id != req.params["customer_id"]:  # merged: the survivor answers for it
        headers.update({"Content-Location": f"/v1/customers/{customer.id}", "X-Rapport-Merged-Into": customer.id})
    return Result(200, customer, headers)


@endpoint(
    bp,
    "/v1/customers/{customer_id}/merge",
    "POST",
    operation_id="mergeCustomers",
    tag=TAG,
    scope=WRITE,
    summary="Merge other_id into this customer: identities, timeline, orders and "
    "points; other_id then resolves to this customer. Repeating it is safe and finishes an "
    "interrupted merge",
    body="MergeRequest",
    responses={200: "Customer"},
    errors=(404, 409, 422),
    idempotent=True,
)
def merge_customers(req: Request) -> Result:
    from crm.merge import merge

    customer = merge(req.ctx, req.params["customer_id"], req.body.other_id)
    return Result(200, customer, _etag(customer))


@endpoint(
    bp,
    "/v1/customers/{customer_id}",
    "PATCH",
    operation_id="updateCustomer",
    tag=TAG,
    scope=WRITE,
    summary="Update a customer; If-Match with a stale ETag gets 412",
    body="CustomerPatch",
    responses={200: "Customer"},
    errors=(404, 409, 410, 412),
    if_match=True,
)
def update_customer(req: Request) -> Result:
    from crm.customers import service

    customer = service.update(req.ctx, req.params["customer_id"], req.body, req.if_match)
    return Result(200, customer, _etag(customer))


@endpoint(
    bp,
    "/v1/customers/{customer_id}",
    "DELETE",
    operation_id="eraseCustomer",
    tag=TAG,
    scope=WRITE,
    summary="Erase a customer's personal data, keeping an anonymized tombstone",
    responses={200: "Customer"},
    errors=(404, 409),
)
def erase_customer(req: Request) -> Result:
    """The partition is erased in the request; the rest of the tenant by a follow-up on
    the sync queue (queued again by a repeat while ``erasure.status`` is pending)."""
    from crm import (
        erasure,
        queues,  # the sync queue's sender (crm/queues.py)
    )
    from crm.customers import service

    customer = service.erase(req.ctx, req.params["customer_id"])
    if customer.erasure is not None and customer.erasure.status == "pending":
        queues.send("sync", [erasure.message(req.ctx.tenant_id, customer.id)])
    return Result(200, customer)


@endpoint(
    bp,
    "/v1/customers/{customer_id}/events",
    "POST",
    operation_id="createTimelineEvent",
    tag=TAG,
    scope=WRITE,
    summary="Record an interaction on the customer's timeline",
    body="TimelineEventCreate",
    responses={201: "TimelineEvent"},
    errors=(404, 410),
    idempotent=True,
)
def create_event(req: Request) -> Result:
    from crm.customers import service

    _refuse_reserved(req.body.type)

    return Result(201, service.add_event(req.ctx, req.params["customer_id"], req.body))


RESERVED_PREFIXES = ("order.", "points.", "tier.", "customer.")


def _refuse_reserved(type_: str) -> None:
    """Domain events are Rapport's own facts: a key must not forge an ``order.paid``."""
    from crm.errors import Invalid
    from crm.events import TYPES

    if type_ in TYPES or type_.startswith(RESERVED_PREFIXES):
        raise Invalid(
            f"event type '{type_}' is reserved for Rapport's own events (types starting "
            f"with {', '.join(RESERVED_PREFIXES)}); use a type of your own, e.g. "
            "email.opened",
            field="type",
            code="reserved_event_type",
        )


@endpoint(
    bp,
    "/v1/customers/{customer_id}/events",
    "GET",
    operation_id="listTimelineEvents",
    tag=TAG,
    scope=READ,
    summary="The customer's timeline, newest first",
    query="PageQuery",
    responses={200: "TimelinePage"},
    errors=(404,),
)
def list_events(req: Request) -> Result:
    from crm.customers import service

    page = service.list_events(req.ctx, req.params["customer_id"], limit=req.query.limit, cursor=req.query.cursor)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    "/v1/customers/{customer_id}/360",
    "GET",
    operation_id="getCustomer360",
    tag=TAG,
    scope=READ,
    summary="Profile, 10 latest orders (null without the orders:read scope) "
    "and 20 latest timeline entries in one DynamoDB Query",
    responses={200: "Customer360"},
    errors=(404,),
)
def customer_360(req: Request) -> Result:
    from crm.customer360 import view_360

    view = view_360(req.ctx, req.params["customer_id"])
    if not req.ctx.allows("orders:read"):  # customers:read alone does not show orders
        view = view.model_copy(update={"recent_orders": None, "recent_shipments": None})
    return Result(200, view)


@endpoint(
    bp,
    "/v1/customers/{customer_id}/export",
    "GET",
    operation_id="exportCustomer",
    tag=TAG,
    scope=READ,
    summary="Everything held about the customer, as JSON, paged (GDPR art. 20; customers:read)",
    query="CustomerExportQuery",
    responses={200: "CustomerExport"},
    errors=(404,),
)
def export_customer(req: Request) -> Result:
    from crm.export import export

    q = req.query
    return Result(200, export(req.ctx, req.params["customer_id"], limit=q.limit, cursor=q.cursor))
