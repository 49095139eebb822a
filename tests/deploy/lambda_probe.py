"""Run by tests/deploy/test_package.py as ``python -I -S lambda_probe.py TASK RUNTIME``.

TASK is the unzipped deployment.zip (Lambda's /var/task) and RUNTIME holds only
boto3/botocore and their dependencies (what the Lambda runtime adds); with ``-I -S``
nothing else is importable except the standard library. Network access is disabled,
so nothing here may call AWS. Prints one JSON report on stdout; raises on failure.
"""
from __future__ import annotations

import ast
import importlib
import json
import socket
import sys
import sysconfig
import time
from pathlib import Path
from types import SimpleNamespace

TASK, RUNTIME = (str(Path(p).absolute()) for p in sys.argv[1:3])
sys.path[:0] = [TASK, RUNTIME]  # /var/task first, then the runtime, as on Lambda
SOURCES = ("app.py", "common", "crm", "api", "functions", "connectors")


def _offline(*args, **kwargs):
    raise OSError("network access is disabled in the Lambda probe")


socket.socket.connect = _offline
socket.socket.connect_ex = _offline
socket.create_connection = _offline
socket.getaddrinfo = _offline


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(tree: ast.AST) -> set[tuple[str, str | None]]:
    """(module, name) for every import anywhere in the tree (function-local ones too),
    except under ``if TYPE_CHECKING:``."""
    found: set[tuple[str, str | None]] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            found.update((node.module, alias.name) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def our_imports() -> set[tuple[str, str | None]]:
    names: set[tuple[str, str | None]] = set()
    for source in SOURCES:
        path = Path(TASK, source)
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            names |= imported_names(ast.parse(file.read_text(), str(file)))
    return names


def import_all(names: set[tuple[str, str | None]]) -> list[str]:
    done = []
    for module, name in sorted(names, key=lambda n: (n[0], n[1] or "")):
        mod = importlib.import_module(module)
        if name is not None and name != "*" and not hasattr(mod, name):
            importlib.import_module(f"{module}.{name}")  # a submodule: `from crm import x`
        done.append(module if name is None else f"{module}.{name}")
    return done


def event(method: str, path: str, headers: dict[str, str] | None = None,
          body: str | None = None) -> dict:
    """An API Gateway REST proxy event, as Lambda delivers it to Chalice."""
    headers = {"accept": "application/json", "host": "example.execute-api.amazonaws.com",
               **(headers or {})}
    return {
        "resource": path, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None, "body": body, "isBase64Encoded": False,
        "requestContext": {"resourcePath": path, "httpMethod": method, "stage": "api",
                           "path": f"/api{path}", "requestId": "probe"},
    }


def provenance() -> dict[str, str]:
    """Where each loaded module came from; anything outside TASK/RUNTIME/stdlib is a leak."""
    stdlib = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
    leaks = {}
    for name, mod in list(sys.modules.items()):
        file = getattr(mod, "__file__", None)
        if not file or file == __file__:
            continue
        if not (file.startswith((TASK, RUNTIME)) or any(file.startswith(p) for p in stdlib)):
            leaks[name] = file
    return leaks


def main() -> None:
    started = time.perf_counter()
    from chalice import Chalice

    import app

    import_app_ms = (time.perf_counter() - started) * 1000
    assert isinstance(app.app, Chalice), type(app.app)
    assert app.__file__.startswith(TASK), app.__file__

    imported = import_all(our_imports())

    import pydantic_core

    assert pydantic_core.__file__.startswith(TASK), pydantic_core.__file__
    from api.openapi import document

    doc = document()
    assert doc["openapi"].startswith("3.1") and doc["paths"], "empty OpenAPI document"

    context = SimpleNamespace(aws_request_id="probe", function_name="rapport-probe",
                              memory_limit_in_mb=1024, get_remaining_time_in_millis=lambda: 30000)
    first = app.app(event("GET", "/v1/openapi.json"), context)
    assert first["statusCode"] == 200, first
    assert json.loads(first["body"])["paths"] == json.loads(json.dumps(doc["paths"]))
    denied = app.app(event("POST", "/v1/customers", {"content-type": "application/json"},
                           json.dumps({"email": "a@example.com"})), context)
    assert denied["statusCode"] == 401, denied

    leaks = provenance()
    assert not leaks, f"modules loaded from outside the zip and the runtime: {leaks}"
    import boto3
    import botocore

    print(json.dumps({
        "import_app_ms": round(import_app_ms, 1),
        "imports_checked": len(imported),
        "openapi_paths": len(doc["paths"]),
        "first_request_status": first["statusCode"],
        "unauthenticated_status": denied["statusCode"],
        "boto3_from": boto3.__file__, "botocore_from": botocore.__file__,
        "pydantic_core_from": pydantic_core.__file__,
        "modules_loaded": len(sys.modules),
    }))


if __name__ == "__main__":
    main()
