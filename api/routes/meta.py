"""The routes that need no key: /v1 (the entry points), /v1/health, /v1/openapi.json and
/v1/docs; and the catch-all that answers 404 for every path no route declares."""

from __future__ import annotations

from chalice import Blueprint, Response

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CATCH_ALL = ("/", "/{proxy+}")  # API Gateway's greedy path: whatever no other route matches


@endpoint(
    bp,
    "/v1",
    "GET",
    operation_id="index",
    tag="meta",
    scope=None,
    summary="The entry points: health, the OpenAPI document and its docs page",
    responses={200: "Index"},
)
def index(req: Request) -> Result:
    return Result(
        200,
        {
            "name": "Rapport API",
            "version": _version(),
            "links": {"health": "/v1/health", "openapi": "/v1/openapi.json", "docs": "/v1/docs"},
        },
    )


@endpoint(
    bp,
    "/v1/health",
    "GET",
    operation_id="health",
    tag="meta",
    scope=None,
    summary="Readiness: the table is reachable",
    responses={200: "Health"},
    errors=(503,),
)
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

    return Response(body=document_json(), status_code=200, headers={"Content-Type": "application/json"})


_DOCS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rapport API</title></head>
<body><h1>Rapport API {version}</h1>
<p>The API is described by its OpenAPI 3.1 document:
<a href="openapi.json">/v1/openapi.json</a>. Open it in any OpenAPI viewer
(Swagger UI, Redoc, an HTTP client's import), or read docs/api.md in the repository.</p>
<p>Every route but this page, <a href="../v1">/v1</a>, <a href="health">/v1/health</a> and the
document needs <code>Authorization: Bearer &lt;key&gt;</code>.</p></body></html>
"""


@bp.route("/v1/docs", methods=["GET"])
def docs() -> Response:
    """A small page pointing at the OpenAPI document (no third-party script is loaded;
    relative links, so it works under a deployed stage prefix too)."""
    return Response(
        body=_DOCS.format(version=_version()), status_code=200, headers={"Content-Type": "text/html; charset=utf-8"}
    )


def not_found() -> Response:
    """No route has this path: 404 problem+json. Unlike API Gateway's and Chalice local's
    own answer (403 MissingAuthenticationToken, which repeats the Authorization header),
    it echoes nothing of the request."""
    from api.problems import problem

    return problem(404, "not_found", "no route matches this path; GET /v1 lists the entry points")


for _path_pattern in CATCH_ALL:
    bp.route(_path_pattern, methods=ANY_METHOD, content_types=["*/*"], name=f"not_found{_path_pattern.count('{')}")(
        not_found
    )
