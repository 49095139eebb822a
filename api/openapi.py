"""The OpenAPI 3.1 document, built from :data:`api.http.OPERATIONS` and the same
pydantic models that validate requests (pydantic emits JSON Schema 2020-12, which
is OpenAPI 3.1's dialect)."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from api.idempotency import KEY_PATTERN as IDEMPOTENCY_KEY_PATTERN

API_VERSION = "1.0.0"
_PATH_PARAM = re.compile(r"{(\w+)}")
_PATH_PATTERNS = {
    "customer_id": r"^cus_[0-9A-Z]{26}$",
    "key_id": r"^[0-9a-z]{10}$",
    "order_id": r"^ord_[0-9A-Z]{26}$",
    "conflict_id": r"^cfl_[0-9a-f]{24}$",
    "segment_id": r"^seg_[0-9A-Z]{26}$",
    "account_id": r"^acc_[0-9A-Z]{26}$",
    "invoice_id": r"^inv_[0-9A-Z]{26}$",
}


def _generator() -> type:
    """pydantic's JSON Schema, told two rules it leaves out, so that the document is as
    strict as the validation: a dict whose keys have a pattern admits no other keys, and
    a string stripped of whitespace before a minimum length must hold a non-space."""
    from pydantic.json_schema import GenerateJsonSchema

    class Strict(GenerateJsonSchema):
        def dict_schema(self, schema):
            out = super().dict_schema(schema)
            if "patternProperties" in out and "additionalProperties" not in out:
                out["additionalProperties"] = False
            return out

        def str_schema(self, schema):
            out = super().str_schema(schema)
            if schema.get("strip_whitespace") and schema.get("min_length"):
                # Python's strip also drops \x1c-\x1f and \x85, which regex's \s (ECMA) does not
                out.setdefault("allOf", []).append({"pattern": r"[^\s\x1c-\x1f\x85]"})
            return out

    return Strict


def _query_parameters(model: Any, defs: dict) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", schema_generator=_generator())
    defs.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
            **({"description": prop["description"]} if "description" in prop else {}),
        }
        for name, prop in schema["properties"].items()
    ]


@functools.lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    from pydantic.json_schema import JsonSchemaMode, models_json_schema

    from api import routes
    from api.http import FORM_CONTENT_TYPES, HTML, OPERATIONS, model

    routes.load_all()  # every route module registers its operations: OPERATIONS is complete

    names = {"Problem"}
    for op in OPERATIONS:
        names.update(n for n in [op.body, *op.responses.values()] if n and n != HTML)
    modes: tuple[JsonSchemaMode, ...] = ("validation", "serialization")
    pairs = [(model(n), mode) for mode in modes for n in sorted(names)]
    key_map, top = models_json_schema(pairs, ref_template="#/components/schemas/{model}", schema_generator=_generator())
    schemas: dict[str, Any] = dict(top.get("$defs", {}))

    def ref(name: str, mode: JsonSchemaMode) -> dict[str, Any]:
        return key_map[(model(name), mode)]

    problem = {"application/problem+json": {"schema": ref("Problem", "serialization")}}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        params: list[dict[str, Any]] = [
            {
                "name": p,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": _PATH_PATTERNS.get(p, ".+")},
            }
            for p in _PATH_PARAM.findall(op.path)
        ]
        if op.query:
            params += _query_parameters(model(op.query), schemas)
        if op.idempotent:
            params.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": op.idempotency_required,
                    "description": "retries with the same key return the first response for 24 h",
                    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
                }
            )
        if op.if_match:
            params.append(
                {
                    "name": "If-Match",
                    "in": "header",
                    "required": False,
                    "description": "the ETag of the version this update is based on",
                    "schema": {"type": "string", "pattern": r'^((W/)?"[0-9]{1,12}"|(W/)?[0-9]{1,12}|\*)$'},
                }
            )
        responses: dict[str, Any] = {}
        for status, name in op.responses.items():
            entry: dict[str, Any] = {"description": "success"}
            if name == HTML:
                entry["content"] = {HTML: {"schema": {"type": "string"}}}
            elif name:
                entry["content"] = {"application/json": {"schema": ref(name, "serialization")}}
            responses[str(status)] = entry
        pages = HTML in op.responses.values()  # a browser's request gets its errors as a page too
        for status in op.errors:
            content = {**problem, HTML: {"schema": {"type": "string"}}} if pages else problem
            responses[str(status)] = {"description": "problem details", "content": content}
        operation: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": params,
            "responses": responses,
        }
        if op.body:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(op.body, "validation")}},
            }
        if op.form:
            form = {"type": "object", "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}}}
            operation["requestBody"] = {
                "required": False,
                "content": {t: {"schema": form} for t in FORM_CONTENT_TYPES if t != "application/json"},
            }
        operation["security"] = [{"bearer": []}] if op.scope else []
        if op.scope:
            operation["description"] = f"Requires the `{op.scope}` scope."
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Rapport API",
            "version": API_VERSION,
            "description": "Multi-tenant CRM backend. Errors are RFC 9457 problem details.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "rpk_<tenant>_<key id>_<secret>"}
            },
        },
    }


def document_json() -> str:
    return json.dumps(document())
