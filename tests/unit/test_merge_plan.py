"""Merge planning (crm.merge.merged_profile, identity_moves), without the emulator:
which profile fields win, what is united, what becomes an alias, and which of the
other's identities move to the survivor."""
from __future__ import annotations

from crm.context import TenantContext
from crm.merge import identity_moves, merged_profile

CTX = TenantContext("t4k2m9x0c1d7q")

SURVIVOR = {"name": {"given": "Ana"}, "email": "ana@a.example", "phone": "+4915111111111",
            "tags": ["VIP", "newsletter"], "addresses": [{"city": "Berlin"}],
            "attributes": {"size": "M", "color": "red"}, "consent": {"email": {"status": "granted", "at": "2024-01-01"}},
            "external_ids": {"shopify": "s1"}}
OTHER = {"name": {"given": "Anna"}, "birth_date": "1990-05-01", "email": "anna@b.example",
         "phone": "+4915122222222", "tags": ["vip", "wholesale"], "addresses": [{"city": "Berlin"}, {"city": "Hamburg"}],
         "attributes": {"size": "L", "shoe": "39"}, "consent": {"sms": {"status": "denied", "at": "2024-02-01"}},
         "external_ids": {"shopify": "s2", "woo": "w2"}, "source_created_at": {"shopify": "2019-01-01"}}


def test_the_survivors_fields_win_and_gaps_are_filled_from_the_other():
    out = merged_profile(SURVIVOR, OTHER, "cus_other")
    assert out["name"] == {"given": "Ana"} and out["birth_date"] == "1990-05-01"
    assert out["email"] == "ana@a.example" and out["phone"] == "+4915111111111"
    assert out["attributes"] == {"size": "M", "color": "red", "shoe": "39"}  # key by key, survivor's keys win
    assert set(out["consent"]) == {"email", "sms"}


def test_tags_and_addresses_are_united_without_duplicates():
    out = merged_profile(SURVIVOR, OTHER, "cus_other")
    assert out["tags"] == ["VIP", "newsletter", "wholesale"]  # tags compare case-insensitively
    assert out["addresses"] == [{"city": "Berlin"}, {"city": "Hamburg"}]


def test_identities_that_do_not_fit_become_aliases():
    out = merged_profile(SURVIVOR, OTHER, "cus_other")
    assert out["aliases"] == {"emails": ["anna@b.example"], "phones": ["+4915122222222"],
                              "external_ids": [{"source": "shopify", "external_id": "s2"}]}
    assert out["external_ids"] == {"shopify": "s1", "woo": "w2"}
    assert out["merged_ids"] == ["cus_other"]
    assert out["source_created_at"] == {"shopify": "2019-01-01"}


def test_an_empty_survivor_takes_the_others_identities_as_its_own():
    out = merged_profile({"name": {"given": "X"}}, OTHER, "cus_other")
    assert out["email"] == "anna@b.example" and out["phone"] == "+4915122222222"
    assert "aliases" not in out


def test_merging_is_pure_and_idempotent():
    before = repr((SURVIVOR, OTHER))
    once = merged_profile(SURVIVOR, OTHER, "cus_other")
    assert repr((SURVIVOR, OTHER)) == before  # the inputs are left alone
    assert merged_profile(once, OTHER, "cus_other") == once


def test_every_identity_of_the_other_moves_and_the_merged_profile_answers_to_it():
    moves = identity_moves(CTX, OTHER)
    assert moves.guards == sorted([CTX.key("U", "email", "anna@b.example"), CTX.key("U", "xid", "shopify", "s2"),
                                   CTX.key("U", "xid", "woo", "w2")])
    assert moves.entries == sorted([CTX.key("I", "phone", "+4915122222222"), CTX.key("I", "tag", "vip"),
                                    CTX.key("I", "tag", "wholesale")])
    merged = identity_moves(CTX, merged_profile(SURVIVOR, OTHER, "cus_other"))
    assert set(moves.guards) <= set(merged.guards) and set(moves.entries) <= set(merged.entries)
