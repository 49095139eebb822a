"""/v1/segments: segments by rules (CRUD, preview, members, the RFM grid) and
/v1/customers/{id}/segments (crm/segments/service.py; docs/segments.md)."""

from __future__ import annotations

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "segments"
READ, WRITE = "segments:read", "segments:write"
_ID = "/v1/segments/{segment_id}"


def _etag(segment: object) -> dict[str, str]:
    return {"ETag": f'"{segment.version}"'}  # type: ignore[attr-defined]


@endpoint(
    bp,
    "/v1/segments",
    "POST",
    operation_id="createSegment",
    tag=TAG,
    scope=WRITE,
    summary="Create a segment from a rule; it builds in the background (status building). "
    "422 names the rule's condition; 409 on a taken name or past the tenant's 50 segments",
    body="SegmentCreate",
    responses={201: "Segment"},
    errors=(409,),
    idempotent=True,
)
def create_segment(req: Request) -> Result:
    from crm.segments import service

    segment = service.create(req.ctx, req.body)
    return Result(201, segment, {**_etag(segment), "Location": f"/v1/segments/{segment.id}"})


@endpoint(
    bp,
    "/v1/segments",
    "GET",
    operation_id="listSegments",
    tag=TAG,
    scope=READ,
    summary="The tenant's segments, oldest first",
    query="PageQuery",
    responses={200: "SegmentPage"},
)
def list_segments(req: Request) -> Result:
    from crm.segments import service

    page = service.list_(req.ctx, req.query.cursor, req.query.limit)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    "/v1/segments/preview",
    "POST",
    operation_id="previewSegment",
    tag=TAG,
    scope=READ,
    summary="Count and sample the customers a rule matches now, before saving it "
    "(names and emails need customers:read too); writes nothing",
    body="PreviewRequest",
    responses={200: "Preview"},
)
def preview_segment(req: Request) -> Result:
    from crm.segments import service

    found = service.preview(req.ctx, req.body.rule, req.body.limit, profiles=req.ctx.allows("customers:read"))
    return Result(200, found)


@endpoint(
    bp,
    "/v1/segments/rfm",
    "GET",
    operation_id="getRfmGrid",
    tag=TAG,
    scope=READ,
    summary="Customers per recency x frequency score (5 x 5), per named RFM segment, and the cut points",
    responses={200: "RfmGrid"},
)
def rfm_grid(req: Request) -> Result:
    from crm.segments import service

    return Result(200, service.rfm_grid(req.ctx))


@endpoint(
    bp,
    _ID,
    "GET",
    operation_id="getSegment",
    tag=TAG,
    scope=READ,
    summary="A segment: its rule, build progress and exact member count (one DynamoDB GetItem)",
    responses={200: "Segment"},
    errors=(404,),
)
def get_segment(req: Request) -> Result:
    from crm.segments import service

    segment = service.get(req.ctx, req.params["segment_id"])
    return Result(200, segment, _etag(segment))


@endpoint(
    bp,
    _ID,
    "PATCH",
    operation_id="updateSegment",
    tag=TAG,
    scope=WRITE,
    summary="Rename, describe or change the rule (a new rule rebuilds); If-Match with a stale ETag gets 412",
    body="SegmentPatch",
    responses={200: "Segment"},
    errors=(404, 409, 412),
    if_match=True,
)
def update_segment(req: Request) -> Result:
    from crm.segments import service

    segment = service.update(req.ctx, req.params["segment_id"], req.body, req.if_match)
    return Result(200, segment, _etag(segment))


@endpoint(
    bp,
    _ID,
    "DELETE",
    operation_id="deleteSegment",
    tag=TAG,
    scope=WRITE,
    summary="Delete a segment (its member list is removed in the background); If-Match with a stale ETag gets 412",
    responses={204: None},
    errors=(400, 404, 412),
    if_match=True,
)
def delete_segment(req: Request) -> Result:
    from crm.segments import service

    service.delete(req.ctx, req.params["segment_id"], req.if_match)
    return Result(204)


@endpoint(
    bp,
    _ID + "/members",
    "GET",
    operation_id="listSegmentMembers",
    tag=TAG,
    scope=READ,
    summary="The segment's members by customer id (provisional while it builds)",
    query="PageQuery",
    responses={200: "SegmentMemberPage"},
    errors=(404,),
)
def list_members(req: Request) -> Result:
    from crm.segments import service

    page = service.members(req.ctx, req.params["segment_id"], req.query.cursor, req.query.limit)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    "/v1/customers/{customer_id}/segments",
    "GET",
    operation_id="listCustomerSegments",
    tag=TAG,
    scope=READ,
    summary="The segments the customer is in now (one DynamoDB BatchGetItem)",
    responses={200: "CustomerSegmentList"},
    errors=(404,),
)
def customer_segments(req: Request) -> Result:
    from crm.segments import service

    return Result(200, {"data": service.of_customer(req.ctx, req.params["customer_id"])})
