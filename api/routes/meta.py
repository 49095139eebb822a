"""/v1/health and /v1/openapi.json: the two routes that need no key."""
from __future__ import annotations

from chalice import Blueprint, Response

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)


@endpoint(bp, "/v1/health", "GET", operation_id="health", tag="meta", scope=None,
          summary="Readiness: the table is reachable", responses={200: "Health"}, errors=(503,))
def health(req: Request) -> Result:
    from crm import settings
    from crm.storage import Item

    try:
        Item.describe_table()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        from crm.errors import Unavailable

        raise Unavailable(f"the table is not reachable: {type(exc).__name__}") from None
    return Result(200, {"status": "ok", "table": settings.table_name(), "version": _version()})


def _version() -> str:
    from api.openapi import API_VERSION

    return API_VERSION


@bp.route("/v1/openapi.json", methods=["GET"])
def openapi() -> Response:
    from api.openapi import document_json

    return Response(body=document_json(), status_code=200,
                    headers={"Content-Type": "application/json"})
