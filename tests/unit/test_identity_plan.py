"""Identity resolution's decision (crm.identity.decide), without the emulator: given who
holds the record's external id and email, whose phone it is, and the tenant's rule
order, match, create or record a conflict, as the module docstring's rules say."""
from __future__ import annotations

import pytest

from crm.identity import DEFAULT_ORDER, Decision, decide


def _decide(order=DEFAULT_ORDER, xid="x1", *, x=None, e=None, phones=None, linked=None) -> Decision:
    return decide(order, xid, by_external_id=x, by_email=e, by_phone=phones, linked=linked or {})


def test_nothing_found_is_a_new_customer():
    assert _decide() == Decision("new")
    assert _decide(phones=[]).outcome == "new"


@pytest.mark.parametrize(("found", "by"), [
    ({"x": "c1"}, "external_id"),
    ({"e": "c1"}, "email"),
    ({"phones": ["c1"]}, "phone"),
    ({"x": "c1", "e": "c1", "phones": ["c1"]}, "external_id"),
])
def test_the_first_rule_that_matches_picks_the_customer(found, by):
    assert _decide(**found) == Decision("match", "c1", by)


def test_the_tenants_order_decides_which_rule_is_asked_first():
    order = ("email", "external_id", "phone")
    assert _decide(order, e="c1", linked={"c1": "x1"}) == Decision("match", "c1", "email")
    assert _decide(("phone", "email", "external_id"), phones=["c2"]) == Decision("match", "c2", "phone")


def test_a_phone_of_several_customers_is_ambiguous():
    d = _decide(phones=["c1", "c2"])
    assert (d.outcome, d.rule, d.reason, d.candidates) == ("conflict", "phone", "ambiguous_phone", ("c1", "c2"))
    assert _decide(x="c3", phones=["c1", "c2"]) == Decision("match", "c3", "external_id")  # never reached


def test_a_customer_linked_to_another_external_id_is_a_conflict():
    d = _decide(e="c1", linked={"c1": "x-other"})
    assert (d.outcome, d.reason, d.matched_by, d.candidates) == \
        ("conflict", "different_external_id", "email", ("c1",))
    assert _decide(e="c1", linked={"c1": "x1"}) == Decision("match", "c1", "email")  # the same id: fine
    assert _decide(xid=None, e="c1", linked={"c1": "x-other"}) == Decision("match", "c1", "email")


def test_only_the_email_elsewhere_updates_the_external_ids_customer_without_it():
    d = _decide(x="c1", e="c2")
    assert d == Decision("match_without_email", "c1", "external_id", rule="email",
                         reason="matches_disagree", candidates=("c1", "c2"))


def test_other_disagreements_write_nothing():
    d = _decide(("email", "external_id", "phone"), x="c1", e="c2")
    assert (d.outcome, d.rule, d.reason, d.matched_by, d.candidates) == \
        ("conflict", "external_id", "matches_disagree", "email", ("c2", "c1"))
    d = _decide(("phone", "external_id", "email"), x="c1", phones=["c3"])
    assert (d.outcome, d.reason, d.matched_by, d.candidates) == ("conflict", "matches_disagree", "phone", ("c3", "c1"))


def test_an_email_held_elsewhere_with_email_matching_off_is_taken():
    d = _decide(("external_id", "phone"), e="c9")
    assert (d.outcome, d.rule, d.reason, d.candidates) == ("conflict", "email", "email_taken", ("c9",))
    assert _decide(("external_id", "phone"), x="c1", e="c1") == Decision("match", "c1", "external_id")
