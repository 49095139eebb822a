"""/v1/api-keys: list, create, revoke and rotate the tenant's keys (admin scope).

Creating and rotating take no Idempotency-Key: the stored response would hold the
secret, which Rapport keeps only as a hash."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "api-keys"


def _issued(issued: Any) -> dict[str, Any]:
    return {**asdict(issued.key), "key": issued.secret}


@endpoint(
    bp,
    "/v1/api-keys",
    "GET",
    operation_id="listApiKeys",
    tag=TAG,
    scope="admin",
    summary="List the tenant's API keys (never their secrets)",
    responses={200: "ApiKeyList"},
)
def list_keys(req: Request) -> Result:
    from crm import apikeys

    return Result(200, {"data": [asdict(k) for k in apikeys.list_keys(req.ctx)]})


@endpoint(
    bp,
    "/v1/api-keys",
    "POST",
    operation_id="createApiKey",
    tag=TAG,
    scope="admin",
    summary="Create a key; the secret is in this response only",
    body="ApiKeyCreate",
    responses={201: "IssuedApiKey"},
)
def create_key(req: Request) -> Result:
    from crm import apikeys

    return Result(201, _issued(apikeys.create(req.ctx, req.body.name, list(req.body.scopes))))


@endpoint(
    bp,
    "/v1/api-keys/{key_id}",
    "DELETE",
    operation_id="revokeApiKey",
    tag=TAG,
    scope="admin",
    summary="Revoke a key (at once on admin routes, within the 60 s key cache elsewhere)",
    responses={200: "ApiKey"},
    errors=(404,),
)
def revoke_key(req: Request) -> Result:
    from crm import apikeys

    return Result(200, asdict(apikeys.revoke(req.ctx, req.params["key_id"])))


@endpoint(
    bp,
    "/v1/api-keys/{key_id}/rotate",
    "POST",
    operation_id="rotateApiKey",
    tag=TAG,
    scope="admin",
    summary="Replace a key with a new secret and revoke the old one",
    responses={201: "IssuedApiKey"},
    errors=(404, 422),
)
def rotate_key(req: Request) -> Result:
    from crm import apikeys

    return Result(201, _issued(apikeys.rotate(req.ctx, req.params["key_id"])))
