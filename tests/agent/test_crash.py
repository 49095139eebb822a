"""Crash safety: the agent is killed (``os._exit``, no cleanup) right after each durable
step of an upload and of a download (rapport_agent.crash.POINTS); the next run ends in
the same state as a run that never crashed: every change on both sides, none twice.

The agent runs in a forked child so a crash costs no interpreter start; one case goes
through the real CLI in a subprocess with ``RAPPORT_AGENT_CRASH_AT``."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections import Counter

import pytest

from rapport_agent import crash

FEED_AND_UPLOAD = [p for p in crash.POINTS if p != "after_file_enqueued"]
OWNERS = {"attributes.card": "local", "name.given": "cloud"}


def _in_child(make_agent, point: str | None, queue) -> None:
    if point:
        os.environ[crash.ENV] = point
    try:
        agent = make_agent(owner=OWNERS)
        agent.cycle()
    except BaseException as exc:  # noqa: BLE001 - report to the parent
        queue.put(repr(exc))
        os._exit(1)
    os._exit(0)


def _run_child(make_agent, point: str | None) -> int:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_in_child, args=(make_agent, point, queue))
    child.start()
    child.join(30)
    assert child.exitcode is not None, "the agent hung"
    if child.exitcode == 1:
        raise AssertionError(queue.get(timeout=5))
    return child.exitcode


def _scenario(make_agent, local_db, server):
    """Synced rows A and B, then changes on both sides: the cloud edits A's email and B's
    name (owned by the cloud), the shop edits B's name too and adds C, the cloud adds D."""
    a = local_db.add(email="a@example.com", first_name="Ann", card="CA")
    b = local_db.add(email="b@example.com", first_name="Bea", card="CB")
    agent = make_agent(owner=OWNERS)
    agent.cycle()
    agent.cycle()  # the feed's cursor is past the creations
    agent.store.close()
    agent.client.close()
    cloud = server.cloud
    cloud.edit(cloud.by_external(str(a)), "email", "a@cloud.example")
    cloud.edit(cloud.by_external(str(b)), "name.given", "CloudBea")
    local_db.set(b, first_name="LocalBea")
    c = local_db.add(email="c@example.com", first_name="Cid")
    cloud.create({"email": "d@example.com", "name": {"given": "Dee"}})
    return a, b, c, len(cloud.applied)


def _check(local_db, server, a, b, c, applied_before):
    cloud = server.cloud
    assert local_db.row(a)["email"] == "a@cloud.example"
    assert cloud.customers[cloud.by_external(str(b))]["profile"]["name"]["given"] == "CloudBea"
    assert local_db.row(b)["first_name"] == "CloudBea"  # the cloud owns the name: its value written back
    assert sum(1 for x in cloud.customers.values() if x["external_id"] == str(c)) == 1
    dees = [r for r in local_db.rows() if r["email"] == "d@example.com"]
    assert len(dees) == 1  # inserted once, whatever the crash
    assert cloud.customers[cloud.by_external(str(dees[0]["id"]))]["profile"]["name"]["given"] == "Dee"
    after = Counter((ext, field) for _, ext, field in cloud.applied[applied_before:])
    assert max(after.values()) == 1, after  # no change applied twice
    assert len(cloud.customers) == 4


def test_without_a_crash(make_agent, local_db, server):
    a, b, c, before = _scenario(make_agent, local_db, server)
    assert _run_child(make_agent, None) == 0
    assert _run_child(make_agent, None) == 0
    _check(local_db, server, a, b, c, before)


@pytest.mark.parametrize("point", FEED_AND_UPLOAD)
def test_a_crash_at_any_step_loses_and_repeats_nothing(make_agent, local_db, server, point):
    a, b, c, before = _scenario(make_agent, local_db, server)
    assert _run_child(make_agent, point) == crash.EXIT_CODE, f"{point} was not reached"
    assert _run_child(make_agent, None) == 0
    assert _run_child(make_agent, None) == 0
    _check(local_db, server, a, b, c, before)


def test_a_dropped_file_is_enqueued_once(tmp_path, make_agent, server):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "customers-1.csv").write_text(
        "id,email,first\n1,ann@example.com,Ann\n,nokey@example.com,X\n2,bob@example.com,Bob\n"
    )
    data = {
        "api": {"url": server.url, "key": "rpk_test", "retries": 0, "backoff_seconds": 0},
        "agent": {"state": str(tmp_path / "csv-state.sqlite")},
        "sources": [
            {
                "kind": "csv",
                "folder": str(folder),
                "customers": {"key": "id", "fields": {"email": "email", "name.given": "first"}},
            }
        ],
    }
    from rapport_agent import config as configs
    from rapport_agent.outbox import Store
    from rapport_agent.scan import open_sources, scan_all

    cfg = configs.parse(data)

    def scan() -> None:
        store = Store(cfg.state_path(tmp_path))
        scan_all(store, open_sources(cfg))
        store.close()

    ctx = multiprocessing.get_context("fork")
    os.environ[crash.ENV] = "after_file_enqueued"
    try:
        child = ctx.Process(target=scan)
        child.start()
        child.join(30)
    finally:
        del os.environ[crash.ENV]
    assert child.exitcode == crash.EXIT_CODE
    assert (folder / "customers-1.csv").exists()
    scan()
    scan()
    assert not (folder / "customers-1.csv").exists() and (folder / "done" / "customers-1.csv").exists()
    store = Store(cfg.state_path(tmp_path))
    assert store.counts() == {"queued": 2, "parked": 1, "acked": 0}
    assert "line 3" in store.parked()[0].reason
    store.close()


def test_the_cli_crashes_where_told_and_recovers(tmp_path, local_db, server, monkeypatch):
    """A real process killed by RAPPORT_AGENT_CRASH_AT; the rest through typer's runner."""
    from typer.testing import CliRunner

    from rapport_agent.cli import app

    local_db.add(email="a@example.com", first_name="Ann")
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[api]\nurl = "{server.url}"\nretries = 1\nbackoff_seconds = 0\n'
        f'[agent]\nstate = "{tmp_path / "cli-state.sqlite"}"\n'
        f'[[sources]]\nkind = "sql"\ndsn = "{local_db.dsn}"\n[sources.customers]\ntable = "customers"\n'
        f'key = "id"\nupdated_at = "updated_at"\nfields = {{ "email" = "email", "name.given" = "first_name" }}\n'
    )
    env = {**os.environ, "RAPPORT_AGENT_KEY": "rpk_test", crash.ENV: "after_upload_sent"}
    done = subprocess.run(
        [sys.executable, "-m", "rapport_agent.cli", "run", "--once", "--config", str(path)],
        check=False,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == crash.EXIT_CODE, done.stderr
    monkeypatch.setenv("RAPPORT_AGENT_KEY", "rpk_test")
    runner = CliRunner()
    done = runner.invoke(app, ["run", "--once", "--config", str(path)])
    assert done.exit_code == 0, done.output
    assert len(server.cloud.customers) == 1 and len(server.cloud.applied) == 2  # email and name, once
    status = runner.invoke(app, ["status", "--config", str(path)])
    assert status.exit_code == 0 and "queued" in status.output and "rpk_test" not in status.output
    server.cloud.revoked = True
    local_db.add(email="b@example.com")
    done = runner.invoke(app, ["run", "--once", "--config", str(path)])
    assert done.exit_code == 3 and "queue" in done.output and "rpk_test" not in done.output
    status = runner.invoke(app, ["status", "--config", str(path)])
    assert "401" in status.output
