"""Every item kind is declared once (crm/schema.py), and the docs show the declarations."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("crm", "connectors", "api", "functions")


def _import_everything() -> None:
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            importlib.import_module(info.name)
    importlib.import_module("app")


@pytest.fixture(scope="module")
def schema():
    _import_everything()
    from crm import schema

    return schema


def test_every_item_class_is_declared(schema):
    classes = schema.item_classes()
    assert len(classes) >= 20  # crm's and connectors' models were found
    assert schema.undeclared() == []


def test_an_undeclared_class_is_caught(schema):
    from crm.storage import Item

    class Forgotten(Item, discriminator="forgotten_for_test"):
        pass

    try:
        assert Forgotten in schema.undeclared()
    finally:
        Item._attributes["kind"]._class_map.pop(Forgotten, None)
        Item._attributes["kind"]._discriminator_map.pop("forgotten_for_test", None)


def test_personal_data_is_never_kept():
    from crm.schema import Kind

    with pytest.raises(ValueError, match="personal data"):
        Kind("x", "P X", "X", "tenant", pii=("data",), erasure="keep")
    with pytest.raises(ValueError, match="customer's items"):
        Kind("x", "P X", "X", "tenant", merge="move")


def test_architecture_key_table_is_the_declared_schema(schema):
    text = (ROOT / "docs" / "architecture.md").read_text()
    start, end = "<!-- schema:begin (crm/schema.py markdown_table) -->", "<!-- schema:end -->"
    assert start in text and end in text
    shown = text.split(start, 1)[1].split(end, 1)[0].strip()
    assert shown == schema.markdown_table(), (
        "docs/architecture.md is out of date: python -m crm.schema > the table between the markers")


def test_the_360_sort_order(schema):
    """One Query of ``sk BETWEEN EV# AND PROFILE`` (descending) returns the profile, the
    recent orders, the points book and the timeline; orders and ledger sort below it."""
    from crm.customers import records

    prefixes = schema.customer_sort_prefixes()
    assert prefixes["customer"] == records.PROFILE and prefixes["event"] == records.EVENT_PREFIX
    assert "EV#" < "LOYALTY" < "METRICS" < "ORDERS" < "PARCELS" < "PROFILE"
    assert (prefixes["event"] < prefixes["loyalty"] < prefixes["metrics"] < prefixes["recent_orders"]
            < prefixes["recent_shipments"] < prefixes["customer"])
    inside = {k for k, p in prefixes.items() if records.EVENT_PREFIX <= p <= records.PROFILE}
    assert inside == {"event", "loyalty", "metrics", "recent_orders", "recent_shipments", "customer"}
    below = {k for k, p in prefixes.items() if p < records.EVENT_PREFIX}
    assert below == {"order", "ledger", "redemption", "email_cap", "checkout", "journey_run", "customer_invoice",
                     "shipment"}
    for name in below:  # A#..., B#..., C#...: every key of theirs sorts below EV#
        assert prefixes[name][0] in "ABC" and prefixes[name][:2] + "\uffff" < records.EVENT_PREFIX
    # every sort key in the partition begins with its kind's prefix, and no two overlap
    values = sorted(prefixes.values())
    assert all(not b.startswith(a) for a, b in zip(values, values[1:]))


def test_connectors_declare_their_kinds(schema):
    kinds = schema.kinds()
    for name in ("connection", "sync_state", "sync_run", "hook_route", "hook_delivery", "idempotency"):
        assert name in kinds
    assert kinds["sync_run"].erasure == "blank" and kinds["idempotency"].erasure == "delete"


def test_every_kind_with_personal_data_is_erased(schema):
    """A kind holding personal data is erased in the customer's partition (by its
    declaration), in the profile's transaction, or by a registered hook."""
    from crm import erasure

    assert erasure.missing() == []
    kinds = schema.kinds()
    hooked = set(erasure._HOOKS)
    assert {"identity_conflict", "idempotency", "sync_run", "upload"} <= hooked
    assert all(kinds[name].erasure != "keep" for name in hooked)


def test_a_new_kind_with_personal_data_and_no_hook_is_reported(schema):
    from crm import erasure
    from crm.schema import Kind, _OTHERS, register

    register("forgotten_notes", Kind("notes", "P NOTES", "<id>", "tenant", pii=("text",), erasure="delete"))
    try:
        assert erasure.missing() == ["forgotten_notes"]
    finally:
        _OTHERS.pop("forgotten_notes")


def test_mentions_finds_the_person_in_any_shape():
    from crm import erasure

    terms = erasure.terms_of("cus_1", {"email": "Ann.Lee@Example.com", "phone": "+14155552671",
                                       "name": {"given": "Zoë Ann", "family": "Leeford"}})
    assert not any("ann.lee" in t.casefold() or "leeford" in t for t in terms)  # digests only
    for value in ({"body": '{"email": "ann.lee@example.com"}'}, "row 3: +1 (415) 555-2671",
                  ["ZOË"], "id AnnLeeford-7", {"customer_id": "cus_1"}):
        assert erasure.mentions(value, terms, "cus_1"), value
    for value in ("someone else", {"email": "bob.smith@example.org"}, "+14155552672", "Le"):
        assert not erasure.mentions(value, terms, "cus_1"), value


def test_a_short_name_is_not_found_inside_other_words():
    from crm import erasure

    terms = erasure.terms_of("cus_1", {"name": {"given": "Exa"}})
    assert erasure.mentions("Exa Smith", terms, "cus_1")
    assert not erasure.mentions("other@example.com", terms, "cus_1")


def test_merge_handles_every_kind_it_is_declared_to_move(schema):
    from crm import merge

    assert merge.unhandled() == []
    moved = {schema.name_of(m): (prefix, keep) for m, prefix, keep in merge.families()}
    assert moved == {"event": ("EV#", False), "redemption": ("B#RDM#", True), "shipment": ("A#SHP#", False)}
    assert set(merge.STEPS) <= set(schema.kinds())
