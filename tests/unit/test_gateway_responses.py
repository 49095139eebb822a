"""Deployed, API Gateway answers a method no route declares itself (unknown paths reach the
app's {proxy+} catch-all): infra/resources.json makes that a 404 problem that repeats
nothing of the request, instead of its 403 quoting the caller's Authorization header."""
from __future__ import annotations

import json
from pathlib import Path

RESOURCES = Path(__file__).resolve().parents[2] / "infra" / "resources.json"


def test_gateway_no_route_answers_are_404_problems_without_request_data():
    resources = json.loads(RESOURCES.read_text())["Resources"]
    responses = {r["Properties"]["ResponseType"]: r["Properties"] for r in resources.values()
                 if r.get("Type") == "AWS::ApiGateway::GatewayResponse"}
    assert {"MISSING_AUTHENTICATION_TOKEN", "INCOMPLETE_SIGNATURE"} <= set(responses)
    for kind in ("MISSING_AUTHENTICATION_TOKEN", "INCOMPLETE_SIGNATURE"):
        props = responses[kind]
        assert props["RestApiId"] == {"Ref": "RestAPI"}
        assert props["StatusCode"] == "404"
        assert props["ResponseParameters"]["gatewayresponse.header.Content-Type"] == "'application/problem+json'"
        body = props["ResponseTemplates"]["application/json"]
        assert "$" not in body  # no $context.error.message (it quotes the Authorization header)
        assert json.loads(body)["code"] == "not_found"


def test_the_app_declares_the_catch_all_api_gateway_routes_to_it():
    import app

    assert {"/", "/{proxy+}"} <= set(app.app.routes)
