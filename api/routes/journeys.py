"""/v1/journeys: triggered, multi-step customer flows (crm/journeys; docs/journeys.md):
CRUD and status; ``GET /v1/customers/{id}/journeys`` lists a customer's runs;
``POST /v1/checkouts`` records the started checkout cart abandonment journeys start from."""

from __future__ import annotations

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "journeys"
READ, WRITE = "email:read", "email:write"
_ID = "/v1/journeys/{journey_id}"
_409 = "409 invalid_transition when the journey's status does not allow it"


def _etag(journey: object) -> dict[str, str]:
    return {"ETag": f'"{journey.version}"'}  # type: ignore[attr-defined]


@endpoint(
    bp,
    "/v1/journeys",
    "POST",
    operation_id="createJourney",
    tag=TAG,
    scope=WRITE,
    summary="Create a journey: a trigger, steps, exit conditions and a re-entry rule (draft unless status "
    "says otherwise). 422 names the step at fault, a template, segment or sender that does not exist",
    body="JourneyDefinition",
    responses={201: "Journey"},
    idempotent=True,
)
def create_journey(req: Request) -> Result:
    from crm.journeys import store

    journey = store.create(req.ctx, req.body)
    return Result(201, journey, {**_etag(journey), "Location": f"/v1/journeys/{journey.id}"})


@endpoint(
    bp,
    "/v1/journeys",
    "GET",
    operation_id="listJourneys",
    tag=TAG,
    scope=READ,
    summary="The tenant's journeys, oldest first, with their run counters",
    query="PageQuery",
    responses={200: "JourneyPage"},
)
def list_journeys(req: Request) -> Result:
    from crm.journeys import store

    page = store.list_(req.ctx, req.query.cursor, req.query.limit)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    _ID,
    "GET",
    operation_id="getJourney",
    tag=TAG,
    scope=READ,
    summary="A journey and its run counters (started, active, completed, exited, emails); one GetItem",
    responses={200: "Journey"},
    errors=(404,),
)
def get_journey(req: Request) -> Result:
    from crm.journeys import store

    journey = store.get(req.ctx, req.params["journey_id"])
    return Result(200, journey, _etag(journey))


@endpoint(
    bp,
    _ID,
    "PATCH",
    operation_id="updateJourney",
    tag=TAG,
    scope=WRITE,
    summary="Change a journey (the fields given replace; the result is validated whole) or its status: "
    "active starts runs, paused holds them, archived ends them; If-Match with a stale ETag gets 412; " + _409,
    body="JourneyPatch",
    responses={200: "Journey"},
    errors=(404, 409, 412),
    if_match=True,
)
def update_journey(req: Request) -> Result:
    from crm.journeys import store

    journey = store.update(req.ctx, req.params["journey_id"], req.body, req.if_match)
    return Result(200, journey, _etag(journey))


@endpoint(
    bp,
    _ID,
    "DELETE",
    operation_id="deleteJourney",
    tag=TAG,
    scope=WRITE,
    summary="Delete a draft, paused or archived journey (its runs end at their next due time); "
    "If-Match with a stale ETag gets 412; " + _409,
    responses={204: None},
    errors=(400, 404, 409, 412),
    if_match=True,
)
def delete_journey(req: Request) -> Result:
    from crm.journeys import store

    store.delete(req.ctx, req.params["journey_id"], req.if_match)
    return Result(204)


@endpoint(
    bp,
    "/v1/customers/{customer_id}/journeys",
    "GET",
    operation_id="listCustomerJourneyRuns",
    tag=TAG,
    scope=READ,
    summary="The customer's journey runs: where each is, when it next runs, what it sent and why it ended",
    query="PageQuery",
    responses={200: "JourneyRunPage"},
    errors=(404,),
)
def list_customer_runs(req: Request) -> Result:
    from crm.journeys import runner

    page = runner.list_runs(req.ctx, req.params["customer_id"], req.query.cursor, req.query.limit)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    "/v1/checkouts",
    "POST",
    operation_id="recordCheckout",
    tag=TAG,
    scope="orders:write",
    summary="Record a started checkout (checkout.started: cart abandonment journeys start from it). "
    "The same checkout_id again answers 200 with the checkout as first recorded",
    body="CheckoutStart",
    responses={201: "StartedCheckout", 200: "StartedCheckout"},
    errors=(404, 410),
    idempotent=True,
)
def record_checkout(req: Request) -> Result:
    from crm.journeys import checkouts

    checkout = checkouts.record(req.ctx, req.body)
    return Result(201 if checkout.created else 200, checkout)
