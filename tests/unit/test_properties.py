"""Property tests of the pure domain rules: normalization, merge-patch, cursors."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.customers import normalize
from crm.customers.schemas import CustomerPatch
from crm.customers.service import patched_data
from crm.paging import decode_cursor as _decode_cursor
from crm.paging import encode_cursor as _encode_cursor
from crm.errors import Invalid

NOW = "2026-01-01T00:00:00.000Z"
keys = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)
values = st.one_of(st.integers(-10**6, 10**6), st.text(max_size=10), st.booleans())
attribute_maps = st.dictionaries(keys, values, max_size=6)
patches = st.dictionaries(keys, st.one_of(st.none(), values), max_size=6)


@given(old=attribute_maps, patch=patches)
def test_attribute_patch_is_rfc7396_merge(old, patch):
    stored = {"email": "a@example.com", **({"attributes": old} if old else {})}
    new = patched_data(stored, CustomerPatch.model_validate({"attributes": patch}), NOW)
    expected = {k: v for k, v in {**old, **patch}.items() if v is not None}
    assert new.get("attributes", {}) == expected
    assert new["email"] == "a@example.com"  # fields not named are untouched


@given(old=attribute_maps, patch=patches)
def test_applying_a_patch_twice_equals_once(old, patch):
    stored = {"email": "a@example.com", "attributes": old}
    p = CustomerPatch.model_validate({"attributes": patch, "tags": ["x"]})
    once = patched_data(stored, p, NOW)
    assert patched_data(once, p, NOW) == once


@given(old=attribute_maps)
def test_an_empty_patch_changes_nothing(old):
    stored = {"email": "a@example.com", "attributes": old} if old else {"email": "a@example.com"}
    assert patched_data(stored, CustomerPatch.model_validate({}), NOW) == stored


@settings(max_examples=200)
@given(local=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,20}[A-Za-z0-9]", fullmatch=True),
       domain=st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}\.(com|org|DE|Example)", fullmatch=True))
def test_email_normalization_is_idempotent_and_case_insensitive(local, domain):
    try:
        once = normalize.email(f"{local}@{domain}")
    except ValueError:
        return  # e.g. consecutive dots: rejected, never half-normalized
    assert normalize.email(once) == once
    assert normalize.email(f"{local.upper()}@{domain.upper()}") == once


@given(st.sampled_from(["+14155552671", "+1 (415) 555-2671", "0014155552671", "+44 20 7183 8750",
                        "+49 30 901820", "+33 4 72 00 00 00"]))
def test_phone_normalization_is_idempotent(raw):
    e164 = normalize.phone(raw)
    assert e164.startswith("+") and e164[1:].isdigit()
    assert normalize.phone(e164) == e164


@given(kind=st.sampled_from(["id", "updated", "event", "tag:vip"]), value=st.text(min_size=1, max_size=80))
def test_cursors_round_trip_and_are_bound_to_their_list(kind, value):
    cursor = _encode_cursor(kind, value)
    assert _decode_cursor(cursor, kind) == value
    with pytest.raises(Invalid):
        _decode_cursor(cursor, "other")


@given(st.text(max_size=40))
def test_garbage_cursors_are_422_not_500(garbage):
    try:
        _decode_cursor(garbage, "id")
    except Invalid:
        pass
