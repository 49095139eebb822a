"""Build the deployable artifacts: ``chalice package`` + ``infra/resources.json``.

    python3 -m uv run python -m infra.package --stage prod out/

writes ``out/sam.json`` (a SAM template: Chalice's API, function and role, deep-merged
with ``infra/resources.json``) and ``out/deployment.zip`` (the Lambda code). It runs

    chalice package --stage STAGE --merge-template infra/resources.json OUT

with three additions that a bare ``chalice package`` does not make (docs/deploy.md):

* ``PIP_NO_DEPS=1``: Chalice's ``pip download -r requirements.txt`` would otherwise
  resolve pynamodb's dependency on botocore again and ship botocore and its
  dependencies (a 21.8 MB zip instead of 10.4 MB), which the Lambda runtime already
  provides. requirements.txt is the complete locked closure (infra/requirements.py),
  so nothing else is lost.
* ``__pycache__`` directories are dropped from the zip: Chalice walks ``vendor/``
  (symlinks to our packages) and would ship whatever bytecode local runs left there.
* a check of the zip: our packages at its root, no boto3/botocore, the size printed.

Chalice needs a region only to name AWS service principals; the template itself is
region-independent (``${AWS::Region}``). If none is configured, us-east-1 is used.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MERGE_TEMPLATE = ROOT / "infra" / "resources.json"
VENDORED = ("common", "crm", "api", "functions", "connectors")  # vendor/<name> -> ../<name>
RUNTIME_PROVIDED = ("boto3", "botocore")              # never in the zip
# our budget (Lambda's limit: 50 MB); 10 MB until email templates brought css-inline (2 MB zipped)
MAX_ZIP_BYTES = 12_000_000


class PackageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Package:
    out_dir: Path
    template: Path
    zip_path: Path
    zip_bytes: int
    seconds: float


@contextlib.contextmanager
def _cache_lock():
    """Serialize packagers (pytest-xdist workers, parallel CI jobs): Chalice writes its
    cached zip in place and another run would reuse it half-written."""
    cache = ROOT / ".chalice" / "deployments"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        try:
            import fcntl
        except ImportError:  # Windows: no lock
            yield
            return
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _region_configured() -> bool:
    if os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"):
        return True
    try:
        import botocore.session

        return bool(botocore.session.get_session().get_config_variable("region"))
    except Exception:  # noqa: BLE001 - a broken profile: let Chalice report it
        return False


def check_vendor() -> None:
    """vendor/<pkg> must be a symlink to ../<pkg>: Chalice copies what it points at."""
    for name in VENDORED:
        link = ROOT / "vendor" / name
        if not link.is_symlink() or link.resolve() != (ROOT / name).resolve():
            raise PackageError(f"vendor/{name} must be a symlink to ../{name} "
                               f"(ln -s ../{name} vendor/{name})")


def chalice_env() -> dict[str, str]:
    env = dict(os.environ, PIP_NO_DEPS="1", PYTHONDONTWRITEBYTECODE="1")
    if not _region_configured():
        env["AWS_DEFAULT_REGION"] = "us-east-1"
    return env


def _strip_bytecode(zip_path: Path) -> int:
    """Rewrite the zip without __pycache__/*.pyc; return how many entries were dropped."""
    with zipfile.ZipFile(zip_path) as src:
        infos = src.infolist()
        keep = [i for i in infos
                if "__pycache__/" not in i.filename and not i.filename.endswith(".pyc")]
        if len(keep) == len(infos):
            return 0
        fd, tmp = tempfile.mkstemp(suffix=".zip", dir=zip_path.parent)
        os.close(fd)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in keep:
                dst.writestr(info, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    os.replace(tmp, zip_path)
    return len(infos) - len(keep)


def _top_level(zip_path: Path) -> set[str]:
    with zipfile.ZipFile(zip_path) as z:
        return {n.split("/", 1)[0] for n in z.namelist()}


def purge_stale_cache() -> list[Path]:
    """Delete Chalice's cached zips that hold boto3/botocore (built by a bare
    `chalice package`): the cache key ignores PIP_NO_DEPS, so they would be reused."""
    stale = []
    for cached in sorted((ROOT / ".chalice" / "deployments").glob("*.zip")):
        try:
            bad = bool(_top_level(cached) & set(RUNTIME_PROVIDED))
        except zipfile.BadZipFile:
            bad = True
        if bad:
            cached.unlink()
            stale.append(cached)
    return stale


def check_zip(zip_path: Path) -> None:
    tops = _top_level(zip_path)
    missing = [p for p in ("app.py", "chalice", *VENDORED) if p not in tops]
    if missing:
        raise PackageError(f"{zip_path.name} lacks {missing} at its root")
    shipped = sorted(tops & set(RUNTIME_PROVIDED))
    if shipped:
        raise PackageError(f"{zip_path.name} contains {shipped}, which the Lambda runtime "
                           "provides: was pip run without PIP_NO_DEPS=1?")


def package(stage: str, out_dir: Path) -> Package:
    """Run chalice package for ``stage`` into ``out_dir`` (created; must be empty)."""
    check_vendor()
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise PackageError(f"{out_dir} is not empty")
    cmd = [sys.executable, "-c", "import sys; from chalice.cli import main; sys.exit(main())",
           "--project-dir", str(ROOT), "package", "--stage", stage,
           "--merge-template", str(MERGE_TEMPLATE), str(out_dir)]
    started = time.perf_counter()
    with _cache_lock():
        purge_stale_cache()
        proc = subprocess.run(cmd, cwd=ROOT, env=chalice_env(), capture_output=True, text=True,
                              check=False)
    if proc.returncode != 0:
        raise PackageError(f"chalice package failed ({proc.returncode}):\n"
                           f"{proc.stdout}\n{proc.stderr}")
    zip_path, template = out_dir / "deployment.zip", out_dir / "sam.json"
    _strip_bytecode(zip_path)
    check_zip(zip_path)
    return Package(out_dir, template, zip_path, zip_path.stat().st_size,
                   time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="chalice package + infra/resources.json")
    parser.add_argument("out_dir", type=Path, help="output directory (created; must be empty)")
    parser.add_argument("--stage", default="dev", choices=("dev", "prod"))
    parser.add_argument("--skip-requirements-check", action="store_true",
                        help="do not compare requirements.txt with `uv export` first")
    args = parser.parse_args(argv)
    if not args.skip_requirements_check:
        from infra import requirements

        try:
            problem = requirements.check()
        except requirements.UvNotFound as exc:
            problem = None
            print(f"warning: requirements.txt not checked against uv.lock: {exc}",
                  file=sys.stderr)
        except RuntimeError as exc:  # uv export failed, e.g. uv.lock is stale
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if problem:
            print(f"error: {problem}; run `python3 -m uv run python -m infra.requirements`",
                  file=sys.stderr)
            return 1
    try:
        built = package(args.stage, args.out_dir)
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{built.template}\n{built.zip_path}: {built.zip_bytes} bytes "
          f"({built.zip_bytes / 2**20:.2f} MiB), built in {built.seconds:.1f} s")
    if built.zip_bytes > MAX_ZIP_BYTES:
        print(f"warning: the zip exceeds the {MAX_ZIP_BYTES:,} bytes budget",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
