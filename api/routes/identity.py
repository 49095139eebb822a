"""/v1/identity: how records from source systems are matched to customers (settings),
and the conflicts that matching recorded for review instead of guessing."""

from __future__ import annotations

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "identity"


@endpoint(
    bp,
    "/v1/identity/settings",
    "GET",
    operation_id="getIdentitySettings",
    tag=TAG,
    scope="admin",
    summary="The order of the identity rules (the defaults until one is PUT)",
    responses={200: "IdentitySettings"},
)
def get_settings(req: Request) -> Result:
    from crm import identity

    return Result(200, identity.get_settings(req.ctx))


@endpoint(
    bp,
    "/v1/identity/settings",
    "PUT",
    operation_id="putIdentitySettings",
    tag=TAG,
    scope="admin",
    summary="Set the order of the identity rules (external_id, email, phone)",
    body="IdentitySettingsFields",
    responses={200: "IdentitySettings"},
)
def put_settings(req: Request) -> Result:
    from crm import identity

    return Result(200, identity.put_settings(req.ctx, req.body))


@endpoint(
    bp,
    "/v1/identity/conflicts",
    "GET",
    operation_id="listIdentityConflicts",
    tag=TAG,
    scope="customers:read",
    summary="Identity conflicts, newest first, optionally by status",
    query="ConflictListQuery",
    responses={200: "IdentityConflictPage"},
)
def list_conflicts(req: Request) -> Result:
    from crm import identity

    q = req.query
    page = identity.list_conflicts(req.ctx, limit=q.limit, cursor=q.cursor, status=q.status)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    "/v1/identity/conflicts/{conflict_id}/resolve",
    "POST",
    operation_id="resolveIdentityConflict",
    tag=TAG,
    scope="customers:write",
    summary="Mark a conflict resolved, with an optional note",
    body="ConflictResolve",
    responses={200: "IdentityConflict"},
    errors=(404,),
)
def resolve_conflict(req: Request) -> Result:
    from crm import identity

    return Result(200, identity.resolve_conflict(req.ctx, req.params["conflict_id"], req.body.note))
