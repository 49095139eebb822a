"""The on-premise agent end to end: ``rapport-agent`` against the real API (the test stack
over HTTP, behind a TCP proxy the test can cut) and a real local database, PostgreSQL
(Debian's server, tests/postgres.py) or SQLite, written the way the shop's own
application writes it.

- a partition: the agent cannot reach the API while both sides change the same and
  different customers (the local clock an hour off); after healing both sides hold the
  same data, per the field rules, with no change lost or applied twice;
- a crash (``os._exit``) at every step of an upload and of a download: the same result;
- a poison record is parked and the queue flows; a revoked key stops the agent with
  its queue kept; an agent key reaches only its own tenant.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.tcp_proxy import Proxy

FIELDS = {
    "email": "email",
    "phone": "phone",
    "name.given": "first_name",
    "name.family": "last_name",
    "attributes.card": "card",
}
# email and phone: latest wins (the default); the shop owns the given name and the card,
# Rapport owns the family name
OWNER = {"name.given": "local", "attributes.card": "local", "name.family": "cloud"}

PG_SCHEMA = [
    """CREATE TABLE customers (id SERIAL PRIMARY KEY, email TEXT, phone TEXT, first_name TEXT,
       last_name TEXT, card TEXT, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
    """CREATE TABLE sales (id SERIAL PRIMARY KEY, customer_id INTEGER, sold_at TIMESTAMPTZ,
       total_cents INTEGER, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
]
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
SQLITE_SCHEMA = [
    f"""CREATE TABLE customers (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT, phone TEXT,
       first_name TEXT, last_name TEXT, card TEXT, updated_at TEXT NOT NULL DEFAULT ({SQLITE_NOW}))""",
    f"""CREATE TABLE sales (id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id INTEGER, sold_at TEXT,
       total_cents INTEGER, updated_at TEXT NOT NULL DEFAULT ({SQLITE_NOW}))""",
]


class Shop:
    """The local system's database, changed the way its own application changes it:
    every write moves ``updated_at`` to the database's now."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pg = dsn.startswith("postgresql")
        self.engine = sa.create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
        self.now = "now()" if self.pg else SQLITE_NOW
        with self.engine.begin() as db:
            for statement in PG_SCHEMA if self.pg else SQLITE_SCHEMA:
                db.execute(sa.text(statement))

    def add(self, **values: Any) -> int:
        cols = ", ".join(values)
        marks = ", ".join(f":{c}" for c in values)
        with self.engine.begin() as db:
            return int(db.execute(sa.text(f"INSERT INTO customers ({cols}) VALUES ({marks}) RETURNING id"),
                                  values).scalar_one())

    def set(self, key: int, **values: Any) -> None:
        sets = ", ".join(f"{c} = :{c}" for c in values)
        with self.engine.begin() as db:
            db.execute(sa.text(f"UPDATE customers SET {sets}, updated_at = {self.now} WHERE id = :key"),
                       {**values, "key": key})

    def sale(self, customer_id: int, total_cents: int) -> int:
        with self.engine.begin() as db:
            return int(db.execute(sa.text(
                f"INSERT INTO sales (customer_id, sold_at, total_cents) VALUES (:c, {self.now}, :t) RETURNING id"),
                {"c": customer_id, "t": total_cents}).scalar_one())

    def rows(self) -> dict[int, dict[str, Any]]:
        with self.engine.connect() as db:
            return {r["id"]: dict(r) for r in db.execute(sa.text("SELECT * FROM customers ORDER BY id")).mappings()}

    def close(self) -> None:
        self.engine.dispose()


def write_config(path: Path, url: str, key: str, dsn: str) -> Path:
    def table(d: dict[str, str]) -> str:
        return "{ " + ", ".join(f'"{k}" = "{v}"' for k, v in d.items()) + " }"

    path.write_text(f"""[api]
url = "{url}"
key = "{key}"
timeout_seconds = 30
retries = 2
backoff_seconds = 0.05

[agent]
state = "state.sqlite"
poll_seconds = 0.2

[[sources]]
kind = "sql"
name = "pos"
dsn = "{dsn}"

[sources.customers]
table = "customers"
key = "id"
updated_at = "updated_at"
fields = {table(FIELDS)}
owner = {table(OWNER)}
default_owner = "latest"
insert = true

[sources.orders]
table = "sales"
key = "id"
updated_at = "updated_at"
currency = "EUR"
channel = "store"
fields = {{ "customer" = "customer_id", "placed_at" = "sold_at", "total" = "total_cents" }}
""")
    return path


class Site:
    """A tenant's agent installed at a shop: the config, the agent in this process (or
    the CLI in a subprocess), the proxy between it and the API."""

    def __init__(self, tenant, api_url: str, dsn: str, folder: Path) -> None:
        created = tenant.http.post("/v1/agents", json={"name": "till server"})
        assert created.status_code == 201, created.text
        self.tenant, self.info = tenant, created.json()
        self.source = self.info["source"]
        self.proxy = Proxy(int(api_url.rsplit(":", 1)[1]))
        self.shop = Shop(dsn)
        self.config = write_config(folder / "rapport-agent.toml", self.proxy.url, self.info["key"], dsn)
        self._agent = None

    # -- the agent ------------------------------------------------------------------------

    def agent(self):
        if self._agent is None:
            from rapport_agent import config as configs
            from rapport_agent.client import Client
            from rapport_agent.outbox import Store
            from rapport_agent.sync import Agent

            cfg = configs.load(self.config)
            client = Client(cfg.api.url, cfg.api_key(), timeout=cfg.api.timeout_seconds, retries=cfg.api.retries,
                            backoff=cfg.api.backoff_seconds)
            self._agent = Agent(cfg, Store(cfg.state_path(self.config.parent)), client)
        return self._agent

    def drop_agent(self) -> None:
        if self._agent is not None:
            self._agent.store.close()
            self._agent.client.close()
            self._agent = None

    def cycle(self):
        """One cycle in this process; None when the API could not be reached."""
        from rapport_agent.client import Offline

        try:
            return self.agent().cycle()
        except Offline:
            return None

    def cli(self, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "RAPPORT_AGENT_CRASH_AT"}
        if crash_at:
            env["RAPPORT_AGENT_CRASH_AT"] = crash_at
        return subprocess.run([sys.executable, "-m", "rapport_agent.cli", *args, "--config", str(self.config)],
                              env=env, capture_output=True, text=True, timeout=120)

    def settle(self, pipeline, *, cli: bool = False, rounds: int = 8) -> None:
        """Cycles until one moves nothing either way (the stream dispatched in between)."""
        for _ in range(rounds):
            assert pipeline.wait_idle(timeout=60)
            if cli:
                done = self.cli("run", "--once")
                assert done.returncode == 0, done.stderr
                quiet = False
            else:
                report = self.cycle()
                assert report is not None, "offline while healed"
                quiet = not (report.sent or report.applied or report.inserted)
            assert pipeline.wait_idle(timeout=60)
            if quiet:
                return
        if not cli:
            raise AssertionError("the agent did not settle")

    # -- the cloud ------------------------------------------------------------------------

    def cloud(self) -> dict[str, dict[str, Any]]:
        """The tenant's customers by this agent's external id (every one must have one)."""
        out: dict[str, dict[str, Any]] = {}
        cursor = None
        while True:
            r = self.tenant.http.get("/v1/customers", params={"limit": 100, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            for c in r.json()["data"]:
                xid = (c.get("external_ids") or {}).get(self.source)
                assert xid, f"a cloud customer the shop does not have: {c['id']} {c.get('email')}"
                assert xid not in out, f"two cloud customers for local row {xid}"
                out[xid] = c
            cursor = r.json()["next_cursor"]
            if not cursor:
                return out

    def patch(self, customer_id: str, body: dict[str, Any]) -> None:
        r = self.tenant.http.patch(f"/v1/customers/{customer_id}", json=body)
        assert r.status_code == 200, r.text

    def assert_same_on_both_sides(self) -> dict[str, dict[str, Any]]:
        """Every local row is one cloud customer and back, with every mapped field equal."""
        cloud, rows = self.cloud(), self.shop.rows()
        assert sorted(cloud) == sorted(str(k) for k in rows), "a customer lost or duplicated"
        for key, row in rows.items():
            c = cloud[str(key)]
            name = c.get("name") or {}
            assert (c.get("email"), c.get("phone"), name.get("given"), name.get("family"),
                    (c.get("attributes") or {}).get("card")) == (
                row["email"], row["phone"], row["first_name"], row["last_name"], row["card"]), key
        return cloud

    def close(self) -> None:
        self.drop_agent()
        self.proxy.close()
        self.shop.close()


@pytest.fixture
def site(tenant, api_url, tmp_path, request):
    dsn = request.getfixturevalue("postgres_url") if getattr(request, "param", "pg") == "pg" \
        else f"sqlite:///{tmp_path / 'pos.sqlite'}"
    s = Site(tenant, api_url, dsn, tmp_path)
    yield s
    s.close()


def _skew(monkeypatch, ms: int) -> None:
    """The shop machine's clock runs ``ms`` off."""
    from rapport_agent import hlc

    real = hlc.wall_ms
    monkeypatch.setattr(hlc, "wall_ms", lambda: real() + ms)


HOUR = 3_600_000


@pytest.mark.parametrize("skew", [HOUR, -HOUR], ids=["clock-ahead", "clock-behind"])
def test_a_long_partition_heals_to_the_same_data_on_both_sides_per_the_rules(site, event_pipeline, monkeypatch, skew):
    _skew(monkeypatch, skew)
    shop = site.shop
    keys = [shop.add(email=f"p{i}@shop.example", first_name=f"First{i}", last_name=f"Last{i}", card=f"C{i}")
            for i in range(7)]
    site.settle(event_pipeline)
    cloud = site.assert_same_on_both_sides()
    ids = {k: cloud[str(k)]["id"] for k in keys}
    before_conflicts = len(site.tenant.http.get(f"/v1/agents/{site.info['id']}/conflicts").json()["data"])

    site.proxy.cut()
    assert site.cycle() is None  # offline: the local changes are read into the outbox all the same
    k0, k1, k2, k3, k4, k5, k6 = keys
    # different fields of one customer: both kept
    shop.set(k0, email="p0.local@shop.example")
    site.patch(ids[k0], {"phone": "+14155550100"})
    # the same field, owned by the shop: the shop's value wins
    site.patch(ids[k1], {"name": {"given": "CloudFirst1", "family": "Last1"}})
    shop.set(k1, first_name="LocalFirst1")
    # the same field, owned by Rapport: Rapport's value wins
    shop.set(k2, last_name="LocalLast2")
    site.patch(ids[k2], {"name": {"given": "First2", "family": "CloudLast2"}})
    # latest wins, the shop's edit first: Rapport's later edit wins, whatever the shop's clock says
    shop.set(k3, email="p3.local@shop.example")
    assert site.cycle() is None
    time.sleep(0.3)
    site.patch(ids[k3], {"email": "p3.cloud@shop.example"})
    # latest wins, Rapport's edit first: the shop's later edit wins (it "sticks")
    site.patch(ids[k4], {"email": "p4.cloud@shop.example"})
    time.sleep(0.3)
    shop.set(k4, email="p4.local@shop.example")
    # only one side changed: no conflict
    shop.set(k5, card="C5-NEW")
    site.patch(ids[k6], {"email": "p6.cloud@shop.example"})
    # new customers on both sides
    new_local = [shop.add(email=f"n{i}@shop.example", first_name=f"New{i}") for i in range(3)]
    new_cloud = [site.tenant.create_customer(email=f"web{i}@shop.example", name={"given": f"Web{i}"})["id"]
                 for i in range(3)]
    for _ in range(3):  # a long stretch: cycle after cycle finds the API unreachable
        assert site.cycle() is None
    assert site.agent().store.counts()["queued"] >= 6  # nothing sent, nothing dropped

    site.proxy.heal()
    site.settle(event_pipeline)
    cloud = site.assert_same_on_both_sides()
    rows = shop.rows()
    assert len(rows) == 7 + 3 + 3
    assert (rows[k0]["email"], rows[k0]["phone"]) == ("p0.local@shop.example", "+14155550100")
    assert rows[k1]["first_name"] == "LocalFirst1"
    assert rows[k2]["last_name"] == "CloudLast2"
    assert rows[k3]["email"] == "p3.cloud@shop.example"
    assert rows[k4]["email"] == "p4.local@shop.example"
    assert rows[k5]["card"] == "C5-NEW" and rows[k6]["email"] == "p6.cloud@shop.example"
    assert {cloud[str(k)]["id"] for k in new_local}.isdisjoint(new_cloud)
    assert {c["id"] for c in cloud.values()} >= set(new_cloud)  # each web customer inserted locally once
    assert {cloud[str(k)]["id"] for k in keys} == set(ids.values())  # the synced customers kept their ids

    # every conflict a rule resolved is on record, once
    conflicts = site.tenant.http.get(f"/v1/agents/{site.info['id']}/conflicts", params={"limit": 100}).json()["data"]
    got = sorted((c["customer_id"], c["field"], c["winner"], c["rule"]) for c in conflicts[: len(conflicts) - before_conflicts])
    assert got == sorted([
        (ids[k1], "name.given", "local", "local"),
        (ids[k2], "name.family", "cloud", "cloud"),
        (ids[k3], "email", "cloud", "latest"),
        (ids[k4], "email", "local", "latest"),
    ])
    k1_conflict = next(c for c in conflicts if c["customer_id"] == ids[k1])
    assert (k1_conflict["local_value"], k1_conflict["cloud_value"]) == ("LocalFirst1", "CloudFirst1")
    assert site.agent().store.counts()["queued"] == 0

    status = site.tenant.http.get(f"/v1/agents/{site.info['id']}").json()
    assert status["online"] is True and status["queued"] == 0 and status["last_sync_at"]
    assert status["conflicts"] >= 4


# the crashing runs are the real CLI in a subprocess (os._exit ends it); the recovery runs
# an agent in this process on the same state file
CRASH_POINTS = [
    "after_scan_enqueue", "after_upload_sent", "after_results_stored", "after_writeback",
    "after_changes_read", "after_fetch", "after_local_write", "after_cursor_stored",
]


@pytest.mark.parametrize("site", ["sqlite"], indirect=True)
def test_a_crash_at_any_step_of_an_upload_or_a_download_loses_and_repeats_nothing(site, event_pipeline):
    from rapport_agent import crash

    assert set(CRASH_POINTS) == set(crash.POINTS) - {"after_file_enqueued"}  # the drop folder's: tests/agent
    shop = site.shop
    base = [shop.add(email=f"c{i}@shop.example", first_name=f"F{i}", last_name=f"L{i}") for i in range(2)]
    site.settle(event_pipeline)
    cloud = site.assert_same_on_both_sides()
    a_id, b_id = cloud[str(base[0])]["id"], cloud[str(base[1])]["id"]
    orders_seen = 0
    for n, point in enumerate(CRASH_POINTS):
        # changes on both sides, so the crashing run reaches the point: the shop edits a
        # field Rapport also edits (Rapport owns the family name: its value must win), adds a
        # customer and a sale; Rapport edits another field and adds a customer
        shop.set(base[0], first_name=f"Local{n}", last_name=f"LocalL{n}")
        site.patch(a_id, {"name": {"given": f"F0-{n}", "family": f"CloudL{n}"}})
        site.patch(b_id, {"email": f"c1.v{n}@shop.example"})
        added = shop.add(email=f"crash{n}@shop.example", first_name=f"Crash{n}")
        shop.sale(added, 1000 + n)
        site.tenant.create_customer(email=f"web.crash{n}@shop.example", name={"given": f"Web{n}"})
        assert event_pipeline.wait_idle(timeout=60)

        site.drop_agent()  # the crashing run is the CLI's own process; the next one reads its state from disk
        crashed = site.cli("run", "--once", crash_at=point)
        assert crashed.returncode == crash.EXIT_CODE, f"{point}: not reached ({crashed.returncode}) {crashed.stderr}"
        site.settle(event_pipeline)

        cloud = site.assert_same_on_both_sides()
        rows = shop.rows()
        # the shop owns the given name, Rapport the family name
        assert (rows[base[0]]["first_name"], rows[base[0]]["last_name"]) == (f"Local{n}", f"CloudL{n}"), point
        assert rows[base[1]]["email"] == f"c1.v{n}@shop.example", point
        assert sum(1 for r in rows.values() if r["email"] == f"web.crash{n}@shop.example") == 1, point
        orders = site.tenant.http.get("/v1/orders", params={"customer_id": cloud[str(added)]["id"]}).json()["data"]
        assert [o["total"] for o in orders] == [1000 + n], point  # the sale, once
        orders_seen += 1
    assert len(site.shop.rows()) == 2 + 2 * len(CRASH_POINTS)
    status = site.cli("status")
    assert status.returncode == 0 and "rpk_" not in status.stdout  # never the key


def test_a_poison_record_is_parked_and_the_queue_flows(site, event_pipeline):
    shop = site.shop
    good = shop.add(email="good@shop.example", first_name="Good")
    bad = shop.add(email="not-an-email", first_name="Bad")
    later = shop.add(email="later@shop.example", first_name="Later")
    site.settle(event_pipeline)
    cloud = site.cloud()
    assert str(good) in cloud and str(later) in cloud and str(bad) not in cloud
    parked = site.tenant.http.get(f"/v1/agents/{site.info['id']}/parked").json()["data"]
    assert [p["external_id"] for p in parked] == [str(bad)] and "email" in str(parked[0]["errors"]) + parked[0]["reason"]
    assert "not-an-email" not in str(parked)  # the rejected value is not echoed
    # the queue is not blocked behind it: a later change flows
    shop.set(later, first_name="Later2")
    site.settle(event_pipeline)
    assert site.cloud()[str(later)]["name"]["given"] == "Later2"
    assert site.agent().store.counts()["parked"] == 1
    # fixing the row locally sends it again
    shop.set(bad, email="fixed@shop.example")
    site.settle(event_pipeline)
    assert site.cloud()[str(bad)]["email"] == "fixed@shop.example"


@pytest.mark.parametrize("site", ["sqlite"], indirect=True)
def test_a_revoked_key_stops_the_agent_and_keeps_its_queue(site, event_pipeline, tmp_path):
    shop = site.shop
    first = shop.add(email="r1@shop.example", first_name="R1")
    site.settle(event_pipeline, cli=True, rounds=2)
    assert site.tenant.http.delete(f"/v1/agents/{site.info['id']}").status_code == 200
    shop.set(first, first_name="R1-changed")
    queued = [shop.add(email=f"q{i}@shop.example") for i in range(3)]
    stopped = site.cli("run", "--once")
    assert stopped.returncode == 3, stopped.stderr
    assert "queue" in stopped.stderr and "rpk_" not in stopped.stderr + stopped.stdout
    status = site.cli("status")
    assert status.returncode == 0 and "4" in status.stdout  # the four changes still queued
    assert site.tenant.http.get(f"/v1/agents/{site.info['id']}").json()["status"] == "revoked"

    reissued = site.tenant.http.post(f"/v1/agents/{site.info['id']}/key")
    assert reissued.status_code == 201
    site.config.write_text(site.config.read_text().replace(site.info["key"], reissued.json()["key"]))
    site.settle(event_pipeline, cli=True, rounds=2)
    cloud = site.assert_same_on_both_sides()
    assert cloud[str(first)]["name"]["given"] == "R1-changed"
    assert all(str(k) in cloud for k in queued)


BODIES = {"/uploads": {"records": []},
          "/heartbeat": {"version": "1", "queued": 0, "parked": 0, "hlc": "1764763200000-00000"}}


def test_an_agent_key_reaches_only_its_own_tenant(site, other_tenant, event_pipeline):
    theirs = other_tenant.create_customer(email="theirs@example.com")
    mine = site.shop.add(email="mine@shop.example")
    site.settle(event_pipeline)
    key = {"Authorization": f"Bearer {site.info['key']}"}
    http = site.tenant.http
    fetched = http.post(f"/v1/agents/{site.info['id']}/fetch", json={"customer_ids": [theirs["id"]]}, headers=key)
    assert fetched.status_code == 200 and fetched.json()["data"] == []
    other_agent = other_tenant.http.post("/v1/agents", json={"name": "theirs"}).json()
    for method, path in (("GET", ""), ("POST", "/heartbeat"), ("POST", "/uploads"), ("GET", "/parked")):
        r = http.request(method, f"/v1/agents/{other_agent['id']}{path}", headers=key,
                         json=BODIES.get(path))
        assert r.status_code in (403, 404), (path, r.status_code)
    changes = http.get("/v1/changes", headers=key).json()["data"]
    assert changes and all(c["customer_id"] != theirs["id"] for c in changes)
    assert other_tenant.http.get("/v1/customers/lookup", params={"email": "mine@shop.example"}).json()["data"] == []
    assert str(mine) in site.cloud()


CSV_SOURCE = """
[[sources]]
kind = "csv"
name = "legacy-export"
prefix = "legacy-"
folder = "{folder}"

[sources.customers]
key = "customer_no"
fields = {{ "email" = "mail", "name.given" = "first" }}
"""


@pytest.mark.parametrize("site", ["sqlite"], indirect=True)
def test_a_csv_drop_folder_goes_up_once_and_a_bad_row_is_parked(site, event_pipeline, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    site.config.write_text(site.config.read_text() + CSV_SOURCE.format(folder=drop))
    site.drop_agent()
    (drop / "export-1.csv").write_text("customer_no,mail,first\n"
                                      "A1,ann@legacy.example,Ann\n"
                                      ",nokey@legacy.example,NoKey\n"
                                      "A2,bob@legacy.example,Bob\n")
    site.settle(event_pipeline)
    assert not (drop / "export-1.csv").exists() and (drop / "done" / "export-1.csv").exists()
    found = {}
    for xid in ("legacy-A1", "legacy-A2"):
        r = site.tenant.http.get("/v1/customers/lookup", params={"source": site.source, "external_id": xid})
        assert r.status_code == 200 and len(r.json()["data"]) == 1, (xid, r.text)
        found[xid] = r.json()["data"][0]
    assert found["legacy-A1"]["email"] == "ann@legacy.example" and found["legacy-A2"]["name"]["given"] == "Bob"
    assert site.agent().store.counts()["parked"] == 1  # the row without a key, with its line
    # the same file dropped again uploads nothing new
    (drop / "export-1.csv").write_text((drop / "done" / "export-1.csv").read_text())
    report = site.cycle()
    assert report is not None and (report.scanned, report.sent) == (0, 0)
    assert (drop / "done").is_dir() and not (drop / "export-1.csv").exists()
