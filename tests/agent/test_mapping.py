"""Normal forms and the pure plans: a touched row uploads nothing, bases decide what
goes up and what comes down."""

from __future__ import annotations

from rapport_agent import mapping, plan
from rapport_agent.mapping import MISSING, Ref


def test_values_compare_in_the_clouds_form():
    assert mapping.normalize("email", " ADA@Example.COM ") == "ada@example.com"
    assert mapping.normalize("email", "not an email") == "not an email"  # rejected by the API, parked
    assert mapping.normalize("phone", "+44 20 7946 0958") == "+442079460958"
    assert mapping.normalize("tags", "vip, VIP ,new") == ["vip", "new"]
    assert mapping.normalize("tags", "") is None and mapping.normalize("tags", []) is None
    assert mapping.normalize("name.given", "  ") is None
    assert mapping.normalize("birth_date", "1990-02-03 00:00:00") == "1990-02-03"
    assert mapping.cloud_value({"name": {"given": "Ada"}, "attributes": {"card": "C1"}}, "attributes.card") == "C1"
    assert mapping.cloud_value({"name": None}, "name.given") is None


def test_a_touched_row_changes_nothing():
    refs = {"email": Ref("a@b.example", "a@b.example"), "name.given": Ref("Ada", "Ada")}
    assert mapping.changed({"email": "a@b.example", "name.given": "Ada"}, refs) == {}
    assert mapping.changed({"email": "c@b.example", "name.given": "Ada"}, refs) == {"email": "c@b.example"}
    # never synced: only fields with a value
    assert mapping.changed({"email": "a@b.example", "phone": None}, {}) == {"email": "a@b.example"}


def test_a_record_carries_the_base_the_cloud_should_hold():
    refs = {"email": Ref("old@x.example", "old@x.example"), "phone": Ref("+15551234567", "+15557654321", pending=4)}
    fields = mapping.customer_fields(
        {"email": "new@x.example", "phone": None, "name.given": "Ada"},
        refs,
        {"email": "latest", "phone": "cloud", "name.given": "local"},
        "h",
    )
    assert fields["email"] == {"value": "new@x.example", "base": "old@x.example", "rule": "latest", "hlc": "h"}
    assert fields["phone"]["base"] == "+15557654321"  # after the queued record 4 applies
    assert "base" not in fields["name.given"]


def test_a_result_the_cloud_won_is_written_back_unless_owned_locally():
    payload = {
        "fields": {
            "email": {"value": "l@x.example", "rule": "latest"},
            "attributes.card": {"value": "c1", "rule": "local"},
            "name.given": {"value": "Ada", "rule": "cloud"},
        }
    }
    refs = {p: Ref(MISSING, v["value"], pending=7) for p, v in payload["fields"].items()}
    result = {"status": "updated", "values": {"email": "c@x.example", "attributes.card": "C1", "name.given": "Ada"}}
    decided = plan.customer_result(7, payload, result, refs)
    by_path = {u.path: u.ref for u in decided.refs}
    assert by_path["email"] == Ref("c@x.example", "c@x.example", None)
    assert decided.writebacks == {"email": ("l@x.example", "c@x.example")}
    assert by_path["attributes.card"] == Ref("C1", "c1", None)  # no loop against a locally owned field
    assert by_path["name.given"] == Ref("Ada", "Ada", None)


def test_a_newer_queued_change_keeps_its_pending_ref():
    payload = {"fields": {"email": {"value": "a@x.example", "rule": "cloud"}}}
    refs = {"email": Ref(MISSING, "b@x.example", pending=9)}
    decided = plan.customer_result(8, payload, {"values": {"email": "c@x.example"}}, refs)
    assert decided.refs[0].ref == Ref("c@x.example", "b@x.example", 9) and not decided.writebacks


def test_down_writes_only_what_the_local_side_did_not_change():
    rules = {"email": "latest", "phone": "latest", "name.given": "local", "name.family": "cloud"}
    profile = {"email": "new@x.example", "phone": "+15551234567", "name": {"given": "Cloud", "family": "Smith"}}
    refs = {
        "email": Ref("old@x.example", "old@x.example"),
        "phone": Ref("+15550000000", "+15550000000"),
        "name.family": Ref("Jones", "Jones", pending=3),
    }
    local = {"email": "old@x.example", "phone": "+15559999999", "name.given": "Local", "name.family": "Brown"}
    decided = plan.customer_down(profile, local, refs, rules)
    assert decided.writes == {"email": "new@x.example"}  # phone changed locally: its upload decides
    assert set(decided.refs) == {"email"}
