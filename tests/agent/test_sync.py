"""Cycles against the fake cloud: up, down, poison records parked without blocking the
queue, bisecting a failing batch, a revoked key keeping the queue, offline buffering."""

from __future__ import annotations

import pytest

from rapport_agent.client import Offline, Unauthorized
from rapport_agent.sync import run


def test_up_then_a_touched_row_uploads_nothing(make_agent, local_db, server):
    agent = make_agent()
    key = local_db.add(email="ADA@example.com", first_name="Ada", card="C1")
    report = agent.cycle()
    assert report.scanned == 1 and report.sent == 1
    cid = server.cloud.by_external(str(key))
    assert server.cloud.customers[cid]["profile"] == {
        "email": "ada@example.com",
        "name": {"given": "Ada"},
        "attributes": {"card": "C1"},
    }
    local_db.set(key, first_name="Ada")  # touched, same value
    assert agent.cycle().scanned == 0
    local_db.set(key, first_name="Adele")
    report = agent.cycle()
    assert report.scanned == 1
    record = server.cloud.applied[-1]
    assert record[2] == "name.given" and server.cloud.customers[cid]["profile"]["name"]["given"] == "Adele"
    assert server.cloud.heartbeats[-1]["queued"] == 0


def test_down_writes_cloud_changes_and_inserts_cloud_customers(make_agent, local_db, server):
    agent = make_agent()
    key = local_db.add(email="ada@example.com", first_name="Ada", card="C1")
    agent.cycle()  # first run: the feed from now, the row goes up
    cid = server.cloud.by_external(str(key))
    server.cloud.edit(cid, "email", "ada@new.example")
    server.cloud.edit(cid, "attributes.card", "CLOUD")  # owned locally: never written down
    new = server.cloud.create({"email": "bob@example.com", "name": {"given": "Bob"}})
    report = agent.cycle()
    assert report.applied == 1 and report.inserted == 1
    row = local_db.row(key)
    assert row["email"] == "ada@new.example" and row["card"] == "C1"
    bob = [r for r in local_db.rows() if r["email"] == "bob@example.com"]
    assert len(bob) == 1 and bob[0]["first_name"] == "Bob"
    agent.cycle()  # the link record goes up; the written rows upload nothing else
    assert server.cloud.customers[new]["external_id"] == str(bob[0]["id"])
    assert agent.cycle().scanned == 0
    # the card is local-owned: the next local change overrides the cloud's value
    local_db.set(key, card="C2")
    agent.cycle()
    assert server.cloud.customers[cid]["profile"]["attributes"]["card"] == "C2"


def test_concurrent_edits_resolve_by_rule_and_the_loser_is_written_back(make_agent, local_db, server):
    agent = make_agent(owner={"attributes.card": "local", "name.given": "cloud"})
    key = local_db.add(email="ada@example.com", first_name="Ada", card="C1")
    agent.cycle()
    cid = server.cloud.by_external(str(key))
    server.cloud.edit(cid, "name.given", "CloudName")
    local_db.set(key, first_name="LocalName")
    agent.cycle()
    assert server.cloud.customers[cid]["profile"]["name"]["given"] == "CloudName"
    assert local_db.row(key)["first_name"] == "CloudName"  # cloud won: written back
    assert next(iter(server.cloud.conflicts.values()))["winner"] == "cloud"
    # latest: the local edit the agent sees after the cloud's wins, however late its clock
    server.cloud.edit(cid, "email", "cloud@example.com")
    agent.download(__import__("rapport_agent.sync", fromlist=["CycleReport"]).CycleReport())
    local_db.set(key, email="local@example.com")
    agent.cycle()
    assert server.cloud.customers[cid]["profile"]["email"] == "local@example.com"


def test_a_rejected_record_is_parked_and_the_rest_flow(make_agent, local_db, server):
    agent = make_agent()
    good1 = local_db.add(email="a@example.com")
    local_db.add(email="bad-email")
    good2 = local_db.add(email="b@example.com")
    report = agent.cycle()
    assert report.parked == 1 and agent.store.counts() == {"queued": 0, "parked": 1, "acked": 2}
    assert "invalid" in agent.store.parked()[0].reason or "email" in agent.store.parked()[0].reason
    assert {server.cloud.by_external(str(k)) is not None for k in (good1, good2)} == {True}
    assert agent.cycle().scanned == 0  # the unchanged poison value is not queued again


@pytest.mark.parametrize("poison", ["POISON_422", "POISON_500"])
def test_a_failing_batch_is_bisected_to_the_one_record(make_agent, local_db, server, poison):
    agent = make_agent()
    keys = [local_db.add(email=f"c{i}@example.com") for i in range(7)]
    local_db.set(keys[4], first_name=poison)
    agent.cycle()
    counts = agent.store.counts()
    assert counts["parked"] == 1 and counts["queued"] == 0
    parked = agent.store.parked()[0]
    assert parked.external_id == str(keys[4])
    assert poison[-3:] in parked.reason
    assert all(server.cloud.by_external(str(k)) for k in keys if k != keys[4])  # the others went up
    assert len({s for s, _, _ in server.cloud.applied}) == 6


def test_a_revoked_key_stops_the_agent_and_keeps_the_queue(make_agent, local_db, server):
    agent = make_agent()
    local_db.add(email="a@example.com")
    agent.cycle()
    local_db.add(email="b@example.com")
    server.cloud.revoked = True
    with pytest.raises(Unauthorized):
        run(agent, once=True)
    assert agent.store.counts()["queued"] == 1
    server.cloud.revoked = False
    assert run(agent, once=True) == 0
    assert agent.store.counts()["queued"] == 0


def test_offline_keeps_scanning_and_flows_when_back(make_agent, local_db, server):
    agent = make_agent()
    agent.cycle()
    server.cloud.down = True
    for i in range(3):
        local_db.add(email=f"o{i}@example.com")
    with pytest.raises(Offline):
        agent.cycle()
    assert agent.store.counts()["queued"] == 3
    assert run(agent, once=True) == 1  # --once offline: non-zero, queue kept
    server.cloud.down = False
    assert run(agent, once=True) == 0
    assert agent.store.counts()["queued"] == 0 and len(server.cloud.customers) == 3


def test_orders_go_up_once(make_agent, local_db, server):
    agent = make_agent()
    key = local_db.add(email="a@example.com")
    sale = local_db.sale(
        customer_id=key,
        sold_at="2026-01-01T10:00:00Z",
        total_cents=1500,
        lines_json='[{"sku": "TEE", "name": "Tee", "quantity": 1, "unit_price": 1500}]',
    )
    agent.cycle()
    order = server.cloud.orders[str(sale)]
    assert order["customer"] == {"external_id": str(key)} and order["total"] == 1500 and order["currency"] == "EUR"
    with local_db.connect() as db:
        db.execute("UPDATE sales SET updated_at = ? WHERE id = ?", (local_db.stamp(), sale))
    agent.cycle()
    assert [a for a in server.cloud.applied if a[2] == "order"] == [(2, str(sale), "order")]
