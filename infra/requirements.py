"""Generate ``requirements.txt`` (what `chalice package` puts in the Lambda zip) from uv.lock.

    python3 -m uv run python -m infra.requirements           # rewrite requirements.txt
    python3 -m uv run python -m infra.requirements --check   # exit 1 if it drifted

The file is the lock's runtime closure (``[project.dependencies]``, no dev group, not
the project itself) exported by ``uv export``. ``--prune botocore`` drops botocore and
what only it needs (urllib3, python-dateutil, six): the Lambda Python runtime ships
boto3/botocore with those, and a second copy would take the zip from 4.8 MB to 21.8 MB.
Because the file is the *complete* closure, `infra/package.py` runs Chalice's
``pip download`` with ``--no-deps`` (``PIP_NO_DEPS=1``) so pip cannot pull botocore
back in as pynamodb's dependency.

``tests/unit/test_requirements.py`` fails when the committed file differs from what
this prints now.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"

# Provided by the Lambda runtime (boto3 is not even a runtime dependency; botocore
# arrives through pynamodb). Pruning also drops their exclusive dependencies.
RUNTIME_PROVIDED = ("boto3", "botocore")
# Not shipped: ``stripe`` declares ``requests``, but crm/billing/stripe_api.py gives it
# httpx (already in the zip for the connectors), so requests, urllib3 2 (the runtime's
# botocore brings its own) and charset-normalizer stay out.
NOT_SHIPPED = ("requests",)

EXPORT_ARGS = [
    "export", "--format", "requirements-txt",
    "--no-dev",            # runtime dependencies only
    "--no-emit-project",   # our packages ship through vendor/, not as a wheel
    "--no-hashes",         # Chalice's pip download pass does not pass hashes through
    "--locked",            # fail if uv.lock is stale against pyproject.toml
    *[arg for name in RUNTIME_PROVIDED + NOT_SHIPPED for arg in ("--prune", name)],
]


class UvNotFound(RuntimeError):
    pass


def uv_command() -> list[str]:
    """How to run uv: ``$UV`` (set by ``uv run``), the ``uv`` module of this
    interpreter (once uv is a dev dependency), or ``uv`` on PATH."""
    if os.environ.get("UV") and Path(os.environ["UV"]).is_file():
        return [os.environ["UV"]]
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    found = shutil.which("uv")
    if found:
        return [found]
    raise UvNotFound("uv is not available: run through `python3 -m uv run ...`, "
                     "or install uv (https://docs.astral.sh/uv/)")


def export() -> str:
    """What requirements.txt must contain, as uv prints it from uv.lock now."""
    proc = subprocess.run([*uv_command(), *EXPORT_ARGS, "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"uv export failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def check() -> str | None:
    """None if requirements.txt is current, else a one-line reason."""
    if not REQUIREMENTS.exists():
        return f"{REQUIREMENTS.name} does not exist"
    if REQUIREMENTS.read_text() != export():
        return f"{REQUIREMENTS.name} differs from `uv export` of uv.lock"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if requirements.txt drifted from uv.lock")
    args = parser.parse_args(argv)
    if args.check:
        problem = check()
        if problem:
            print(f"{problem}; run `python3 -m uv run python -m infra.requirements`",
                  file=sys.stderr)
            return 1
        print(f"{REQUIREMENTS.name} is up to date")
        return 0
    REQUIREMENTS.write_text(export())
    print(f"wrote {REQUIREMENTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
