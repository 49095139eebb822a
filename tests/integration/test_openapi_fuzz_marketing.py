"""The OpenAPI fuzz of the segments, email, journeys and checkout operations, with the
same checks and examples as test_openapi_fuzz.py (which has the rest, and the reasons of
the rules beyond the schema). Several files, so several workers share the suite's
longest work."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from tests.integration.test_openapi_fuzz import (  # noqa: F401 - fixtures: this module's own tenant and document
    api_schema,
    call_and_check,
    fuzz_tenant,
    lazy_schema,
)

pytestmark = pytest.mark.slow
schema = lazy_schema("marketing")


@schema.parametrize()
@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "2")), deadline=None,
          suppress_health_check=list(HealthCheck), derandomize=not os.environ.get("RAPPORT_FUZZ_RANDOM"))
def test_every_marketing_operation_conforms(case, fuzz_tenant, api_url):  # noqa: F811
    call_and_check(case, fuzz_tenant, api_url)
