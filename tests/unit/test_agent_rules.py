"""The agent protocol's pure parts: the per-field conflict rules (crm/agents/rules.py),
HLCs, record validation, rounds of a batch."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crm.agents import hlc, records, rules
from crm.agents.customers import rounds
from crm.agents.rules import Change

CLOUD = "1764763200000-00000"
EARLIER, LATER = "1764763199999-00009", "1764763200000-00001"
values = st.one_of(st.none(), st.text(max_size=5), st.integers(-3, 3), st.lists(st.text(max_size=3), max_size=2))


def test_each_rule():
    cur = "cloud"
    assert rules.decide(Change("locale", "cloud", "cloud", EARLIER), cur, CLOUD).action == "same"
    applied = rules.decide(Change("locale", "new", "cloud", EARLIER, base="cloud", has_base=True), cur, CLOUD)
    assert (applied.action, applied.winner) == ("apply", None)  # only the agent changed it
    assert rules.decide(Change("locale", "new", "cloud", EARLIER), None, CLOUD).action == "apply"  # nothing there
    both = Change("locale", "new", "cloud", LATER, base="old", has_base=True)
    assert (rules.decide(both, cur, CLOUD).action, rules.decide(both, cur, CLOUD).winner) == ("keep", "cloud")
    local = Change("locale", "new", "local", EARLIER, base="old", has_base=True)
    assert rules.decide(local, cur, CLOUD).winner == "local"
    assert rules.decide(Change("locale", "new", "latest", LATER, "old", True), cur, CLOUD).winner == "local"
    assert rules.decide(Change("locale", "new", "latest", EARLIER, "old", True), cur, CLOUD).winner == "cloud"
    assert rules.decide(Change("locale", "new", "latest", CLOUD, "old", True), cur, CLOUD).winner == "cloud"  # a tie
    assert rules.decide(Change("locale", "new", "latest", LATER), cur, CLOUD).winner == "local"  # no base: a conflict


@given(value=values, cur=values, base=values, has_base=st.booleans(),
       rule=st.sampled_from(["cloud", "local", "latest"]), stamp=st.sampled_from([EARLIER, CLOUD, LATER]))
def test_applying_twice_changes_nothing(value, cur, base, has_base, rule, stamp):
    """After a record's plan is applied, the same record again plans nothing to write and
    no new conflict: a retried upload (or a replayed one) is a no-op."""
    change = Change("attributes.k", value, rule, stamp, base, has_base)
    data = {"attributes": {"k": cur}} if cur is not None else {}
    first = rules.plan([change], data, CLOUD)
    after = dict(data)
    if first.applied:
        after = {"attributes": {"k": value}} if value is not None else {}
    second = rules.plan([change], after, CLOUD)
    if first.applied or rules.same(value, cur):
        assert second.applied == {} and second.conflicts == []
    else:  # the cloud kept its value: the same conflict again, under the same id
        assert second.applied == {} and [d.winner for d in second.conflicts] == ["cloud"]
        assert rules.conflict_id("agt_x", 1, "attributes.k") == rules.conflict_id("agt_x", 1, "attributes.k")


@given(cur=values, value=values)
def test_cloud_rule_never_overwrites_a_value_it_did_not_know(cur, value):
    change = Change("tags", value, "cloud", LATER, base="something else", has_base=True)
    d = rules.decide(change, cur, CLOUD)
    assert d.action in ("same", "keep") or rules.same("something else", cur)


def test_patch_keeps_the_other_name_part_and_merges_attributes():
    data = {"name": {"given": "Ada", "family": "L"}, "attributes": {"a": 1, "b": 2}}
    assert rules.patch({"name.given": "Bea", "attributes.a": None, "email": "x@y.z"}, data) == {
        "name": {"given": "Bea", "family": "L"}, "attributes": {"a": None}, "email": "x@y.z"}
    assert rules.patch({"name.given": None, "name.family": None}, data) == {"name": None}
    assert rules.values(["name.given", "tags", "attributes.b"], data) == {
        "name.given": "Ada", "tags": None, "attributes.b": 2}


def test_hlc():
    assert hlc.of_iso("2025-12-03T12:00:00.123Z") == "1764763200123-00000"
    assert hlc.HLC.match(hlc.now())
    assert hlc.of_ms(1, 2) == "0000000000001-00002" < hlc.of_ms(2)


def test_records_are_validated_one_by_one():
    ok = records.parse(0, {"seq": 1, "kind": "customer", "external_id": "7", "hlc": CLOUD, "fields": {
        "email": {"value": " Ada@Example.COM ", "base": None, "rule": "latest", "hlc": CLOUD},
        "attributes.x": {"value": 3, "rule": "local", "hlc": CLOUD}}})
    assert isinstance(ok, records.CustomerRecord)
    assert [(c.path, c.value, c.has_base) for c in ok.changes] == [("email", "ada@example.com", True),
                                                                   ("attributes.x", 3, False)]
    bad = records.parse(1, {"seq": 2, "kind": "customer", "external_id": "7", "hlc": CLOUD,
                            "fields": {"email": {"value": "secret-not-an-email", "rule": "latest", "hlc": CLOUD}}})
    assert isinstance(bad, records.Refused) and bad.errors[0]["field"] == "fields.email.value"
    assert "secret-not-an-email" not in repr(bad)  # a parked record never holds the value
    assert isinstance(records.parse(2, {"seq": 3, "kind": "customer", "external_id": "7", "hlc": CLOUD,
                                        "fields": {"password": {"value": "x", "rule": "local", "hlc": CLOUD}}}),
                      records.Refused)
    assert records.parse(3, {"seq": 4, "kind": "boat"}).reason == "kind must be customer or order"
    assert isinstance(records.parse(4, {"seq": 5, "kind": "order", "external_id": "o", "hlc": CLOUD,
                                        "order": {"total": 1}}), records.OrderRecord)


def test_rounds_apply_one_external_ids_records_in_order():
    rec = lambda i, x: records.CustomerRecord(i, i + 1, x, CLOUD, None, [])  # noqa: E731
    batch = [rec(0, "a"), rec(1, "b"), rec(2, "a"), rec(3, "a")]
    assert [[r.index for r in k] for k in rounds(batch)] == [[0, 1], [2], [3]]
