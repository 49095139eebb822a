"""The dependency direction, enforced by parsing every import (lazy ones inside
functions too): app.py/api/functions -> connectors -> crm -> common, and the connector
SDK that partners import (and the on-premise agent runs outside AWS) needs neither crm/
nor boto3."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package (or module) -> top-level modules it must never import
FORBIDDEN = {
    "common": {"crm", "connectors", "api", "functions", "app", "rapport", "boto3", "botocore",
               "pynamodb", "aws_lambda_powertools", "chalice"},
    "crm": {"connectors", "api", "functions", "app", "rapport", "chalice", "aws_lambda_powertools"},
    "connectors": {"api", "functions", "app", "rapport", "chalice"},
    "connectors/sdk": {"crm", "connectors", "api", "functions", "app", "rapport", "boto3", "botocore",
                       "pynamodb", "aws_lambda_powertools", "chalice"},
    "api": {"functions", "app", "rapport"},
    "functions": {"api", "app", "rapport", "chalice"},
    # the on-premise agent (agent/, its own package) runs on a customer's machine: the SDK
    # and common/ only, never the cloud's domain or AWS
    "agent/rapport_agent": {"crm", "api", "functions", "app", "rapport", "boto3", "botocore", "pynamodb",
                            "aws_lambda_powertools", "chalice"},
}
# the SDK may import itself (connectors.sdk.*), nothing else of connectors/
ALLOWED_PREFIXES = {"connectors/sdk": ("connectors.sdk",)}


def test_the_agent_imports_of_connectors_only_the_sdk():
    """rapport_agent may import connectors.sdk (its wheel carries it), no other connector module."""
    bad = [
        f"{path}:{line} {name}"
        for path in sorted((ROOT / "agent/rapport_agent").rglob("*.py"))
        for line, name in _imports(path)
        if name.split(".")[0] == "connectors" and not (name == "connectors.sdk" or name.startswith("connectors.sdk."))
    ]
    assert bad == []


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # `from connectors import sdk` names a submodule, `from functions import queues` too
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def violations(package: str) -> list[str]:
    out = []
    allowed = ALLOWED_PREFIXES.get(package, ())
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in _imports(path):
            if name.startswith(allowed) and (name == allowed[0] or name.startswith(allowed[0] + ".")):
                continue
            if name.split(".")[0] in FORBIDDEN[package]:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_is_below_it(package):
    assert violations(package) == []


def test_openapi_does_not_import_the_app():
    names = {name for _, name in _imports(ROOT / "api" / "openapi.py")}
    assert "app" not in names


def test_the_rule_catches_a_lazy_import(tmp_path):
    """The check itself: an import inside a function counts."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from functions import queues\n    import boto3\n")
    assert {n for _, n in _imports(source)} >= {"functions", "functions.queues", "boto3"}


def test_domain_errors_carry_a_code_and_no_http_status():
    """HTTP lives in api/: a domain error has a stable ``code``; api/problems maps its class
    to a status (every class has one)."""
    from api import problems
    from crm import errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.DomainError)]
    assert len(classes) > 5
    for cls in classes:
        assert not hasattr(cls, "status"), cls
        assert isinstance(cls.code, str) and cls.code
        assert cls in problems.STATUS, cls
    assert "WWW-Authenticate" not in (ROOT / "crm" / "errors.py").read_text()


def test_header_names_live_in_the_api():
    """crm/ names the version a write expected; the API says which header carried it."""
    import json

    from api import problems
    from crm import errors

    for path in (ROOT / "crm").rglob("*.py"):
        assert 'field="If-Match"' not in path.read_text(), path
    answer = problems.from_domain(errors.PreconditionFailed("changed", field=errors.EXPECTED_VERSION))
    body = json.loads(answer.body)
    assert answer.status_code == 412 and body["field"] == "If-Match" and body["code"] == "precondition_failed"
    answer = problems.from_domain(errors.Unauthorized("no key"))
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
