"""Cold start: how long the Lambda handler module takes to import, as a ratio
against ``import boto3`` measured the same way in the same run.

Every sample is a fresh interpreter (``python -c``) that times its own import with
``time.perf_counter`` (interpreter start-up is left out: it is the same for every
handler). The variants are interleaved round by round so that a noisy neighbour
hits all of them alike; the figure is the median of the rounds.

Two bytecode states, each with its own ``PYTHONPYCACHEPREFIX`` in a temporary
directory (so nothing is written next to the sources and no stale .pyc counts):

- cached .pyc (the headline): one discarded warm-up round writes the bytecode, as
  for a runtime or a zip that ships it (the Lambda runtime's own boto3 does);
- from source (``--from-source N``): ``PYTHONDONTWRITEBYTECODE=1`` and an empty
  cache, so every module is compiled on import, as for a zip shipped without .pyc
  files (/var/task is read-only, so Lambda cannot cache them either).

- ``import boto3``: the baseline.
- ``import app``: what every cold start pays (Lambda imports the handler module).
  Target: at most 1.5x the baseline.
- first request: ``app`` plus the modules the first /v1/customers request loads
  (authentication, the customer service and its pydantic schemas), i.e. what the
  lazy imports in ``api/`` defer from the cold start to the first request.
- first request + client: the above plus creating PynamoDB's botocore DynamoDB
  client (service model loading; no network), which the first DynamoDB call does.

    python3 -m uv run python bench/cold_start.py [--rounds 7] [--from-source 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.5

TIMER = """
import sys, time
t = time.perf_counter()
{code}
sys.stdout.write(repr(time.perf_counter() - t))
"""

VARIANTS = {
    "import boto3 (baseline)": "import boto3",
    "import app": "import app",
    "first request": "import app, crm.apikeys, crm.customers.service, api.schemas",
    "first request + DynamoDB client": (
        "import app, crm.apikeys, crm.customers.service, api.schemas\n"
        "import crm.storage\n"
        "crm.storage.Item._get_connection().connection.client"
    ),
}


def _env(pycache: str, write_bytecode: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "PYTHON")) and k != "RAPPORT_TABLE"}
    # What a Lambda container has: a region and credentials in the environment (so
    # botocore never probes the instance-metadata endpoint), no endpoint override.
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "RAPPORT_TABLE": "rapport",
                "PYTHONPYCACHEPREFIX": pycache})
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def sample(code: str, env: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", TIMER.format(code=code)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{code!r} failed:\n{out.stderr}")
    return float(out.stdout)


def _importtime(code: str, env: dict[str, str]) -> list[tuple[str, int]]:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    rows = []
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, _cumulative, name = line.removeprefix("import time:").split("|")
            rows.append((name.strip(), int(self_us)))
    return rows


def import_shares(code: str, env: dict[str, str], top: int = 8) -> list[tuple[str, float]]:
    """Share of the import's self time by top-level package (``-X importtime``),
    leaving out what the interpreter imports before running any code."""
    startup = {name for name, _ in _importtime("pass", env)}
    by_root: dict[str, int] = defaultdict(int)
    for name, self_us in _importtime(code, env):
        if name not in startup:
            by_root[name.split(".")[0]] += self_us
    total = sum(by_root.values()) or 1
    ranked = sorted(by_root.items(), key=lambda kv: -kv[1])[:top]
    return [(name, us / total) for name, us in ranked]


def measure(rounds: int, env: dict[str, str], warm_up: bool) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(rounds + warm_up):
        for name, code in VARIANTS.items():
            value = sample(code, env)
            if round_ or not warm_up:
                samples[name].append(value)
    return samples


def ratio_table(title: str, samples: dict[str, list[float]]):
    from rich.table import Table

    baseline_name = next(iter(VARIANTS))
    base_rounds = samples[baseline_name]
    baseline = statistics.median(base_rounds)
    table = Table(title=title)
    for column in ("what is imported", "ratio (median)", "per-round ratios min-max", "target"):
        table.add_column(column)
    for name in VARIANTS:
        ratio = statistics.median(samples[name]) / baseline
        per_round = [v / b for v, b in zip(samples[name], base_rounds, strict=True)]
        target = "-"
        if name == "import app":
            target = f"<= {TARGET}x " + ("(met)" if ratio <= TARGET else "(ABOVE)")
        table.add_row(name, f"{ratio:.2f}x", f"{min(per_round):.2f}x - {max(per_round):.2f}x",
                      target)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="with cached .pyc (default 7)")
    parser.add_argument("--from-source", type=int, default=0, metavar="ROUNDS",
                        help="also measure compiling from source, this many rounds "
                             "(about 8 s a round on 2 cores; default: skipped)")
    args = parser.parse_args()

    from rich.console import Console

    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="rapport-pyc-") as cached, \
            tempfile.TemporaryDirectory(prefix="rapport-nopyc-") as empty:
        env = _env(cached, write_bytecode=True)
        console.print(ratio_table(
            f"Import time / `import boto3`, cached .pyc (median of {args.rounds} fresh "
            f"interpreters)", measure(args.rounds, env, warm_up=True)))
        if args.from_source:
            console.print(ratio_table(
                f"Import time / `import boto3`, compiled from source (median of "
                f"{args.from_source})",
                measure(args.from_source, _env(empty, write_bytecode=False), warm_up=False)))
        for title, code in (("import app", VARIANTS["import app"]),
                            ("first request", VARIANTS["first request"])):
            shares = ", ".join(f"{name} {share:.0%}"
                               for name, share in import_shares(code, env))
            console.print(f"{title} (cached .pyc): share of import self-time by top-level "
                          f"package: {shares}")


if __name__ == "__main__":
    main()
