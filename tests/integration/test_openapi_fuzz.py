"""schemathesis against the served OpenAPI document: every operation, no 5xx, and every
response (status, content type, body) conforms to the document."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from tests.conftest import Tenant

CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_tenant(api_url):
    t = Tenant(api_url, "Fuzz")
    for i in range(3):
        t.create_customer(email=f"fuzz{i}@example.com", tags=["fuzz"])
    return t


@pytest.fixture(scope="module")
def api_schema(api_url, fuzz_tenant):
    return schemathesis.openapi.from_url(f"{api_url}/v1/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms(case, fuzz_tenant, api_url):
    case.call_and_validate(base_url=api_url, headers={"Authorization": f"Bearer {fuzz_tenant.key}"},
                           checks=CHECKS)


def test_the_document_covers_every_route(api_schema, anon):
    doc = anon.get("/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    import app

    from api.routes.meta import CATCH_ALL

    undocumented = {"/v1/openapi.json", "/v1/docs", *CATCH_ALL}  # the document, its page, the 404s
    routes = {(m, p) for p, entries in app.app.routes.items() for m in entries
              if p not in undocumented}
    assert routes == ops
