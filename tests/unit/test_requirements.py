"""requirements.txt (what `chalice package` ships) must be what uv exports from uv.lock now.

Regenerate with ``python3 -m uv run python -m infra.requirements``. uv must be
available (``$UV`` under ``uv run``, a ``uv`` module, or ``uv`` on PATH): without it
this test fails rather than skips, since a silent skip would let the zip drift.
"""
from __future__ import annotations

import re

from infra import requirements


def test_requirements_txt_matches_uv_export_of_the_lock():
    expected = requirements.export()  # raises UvNotFound / RuntimeError with the reason
    actual = requirements.REQUIREMENTS.read_text() if requirements.REQUIREMENTS.exists() else ""
    assert actual == expected, (
        "requirements.txt drifted from uv.lock: run "
        "`python3 -m uv run python -m infra.requirements` and commit the result")


def test_requirements_are_pinned_runtime_only_and_leave_boto_to_the_lambda_runtime():
    lines = [line.split("#", 1)[0].strip()
             for line in requirements.REQUIREMENTS.read_text().splitlines()]
    pins = [line for line in lines if line]
    assert pins, "requirements.txt is empty"
    names = set()
    for pin in pins:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)(\s*;.*)?", pin)
        assert match, f"not an exact pin: {pin!r}"
        names.add(match.group(1).lower().replace("_", "-"))
    assert "rapport" not in names and not any(p.startswith(("-e", ".")) for p in pins)
    assert not names & {"boto3", "botocore", "s3transfer"}
    # dev-only tools (and the test-only partner connector) never reach the Lambda zip
    assert not names & {"chalice", "moto", "pytest", "typer", "rich", "cfn-lint", "rapport-acme"}
    assert {"pydantic", "pydantic-core", "pynamodb", "aws-lambda-powertools"} <= names
    # the connectors' runtime: the SDK's HTTP client; secrets are sealed by KMS Encrypt
    # itself (connectors/sealing.py), so no crypto library ships (the zip stays under 10 MB)
    assert "httpx" in names and not names & {"cryptography", "cffi", "pycparser"}
