"""/v1/changes: the tenant's change feed (crm/changes.py), read by cursor.

Needs ``changes:read`` (which a key can be limited to, for a system that only listens)."""

from __future__ import annotations

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "changes"


@endpoint(
    bp,
    "/v1/changes",
    "GET",
    operation_id="listChanges",
    tag=TAG,
    scope="changes:read",
    summary="Changes in commit order after a cursor ('now' for the end): 1 Query a page; 410 once past retention",
    query="ChangeListQuery",
    responses={200: "ChangePage"},
    errors=(410,),
)
def list_changes(req: Request) -> Result:
    from crm import changes

    q = req.query
    types = changes.expand_types(q.types.split(",")) if q.types else None
    data, cursor, more = changes.page(req.ctx, q.cursor, types, q.limit)
    return Result(200, {"data": data, "next_cursor": cursor, "has_more": more})
