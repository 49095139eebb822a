"""Segment rules: validation names the condition, evaluation follows the documented
semantics, and ``next_flip`` is exactly the next instant the answer changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dateutil.relativedelta import relativedelta
from hypothesis import given, settings
from hypothesis import strategies as st

from common.clock import iso, parse
from crm.segments import fields, rules
from crm.segments.rules import RuleError, evaluate, next_flip

NOW = "2026-03-10T12:00:00.000Z"
MS = timedelta(milliseconds=1)


def cond(field, op, value=True):
    return {"field": field, "op": op, "value": value}


def error(rule) -> RuleError:
    with pytest.raises(RuleError) as info:
        rules.parse(rule)
    return info.value


# -- validation ------------------------------------------------------------------------


def test_the_issues_example_parses_and_normalizes():
    rule = {
        "all": [
            cond("vip", "=", True),
            cond("orders.last_at", "older_than", "p90d"),
            {"any": [cond("birth_date", "birthday_within", 7), cond("tags", "contains", "gold")]},
        ]
    }
    parsed = rules.parse(rule)
    assert parsed["all"][1]["value"] == "P90D"
    assert rules.parse(parsed) == parsed
    assert rules.fields_of(parsed) == {"vip", "orders.last_at", "birth_date", "tags"}


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        (
            {"all": [cond("tags", "exists"), {"any": [cond("ordrs.count", "=", 1)]}]},
            "rule.all[1].any[0]",
            'unknown field "ordrs.count"',
        ),
        ({"all": [cond("tags", ">", 1)]}, "rule.all[0]", 'op ">" does not fit a list field'),
        ({"all": [cond("vip", "older_than", "P1D")]}, "rule.all[0]", 'op "older_than" does not fit a bool field'),
        ({"all": [cond("orders.last_at", "older_than", "90 days")]}, "rule.all[0]", "ISO 8601 duration such as P90D"),
        ({"all": [cond("orders.last_at", "within", "P0D")]}, "rule.all[0]", "longer than zero"),
        ({"all": [cond("orders.last_at", "within", "-P1D")]}, "rule.all[0]", "ISO 8601 duration"),
        ({"all": [cond("orders.last_at", "within", "PT")]}, "rule.all[0]", "ISO 8601 duration"),
        ({"all": [cond("orders.last_at", "within", "P200Y")]}, "rule.all[0]", "at most 100 years"),
        ({"all": [cond("rfm.segment", "=", "Champs")]}, "rule.all[0]", 'value "Champs" is not one of'),
        ({"all": [cond("rfm.segment", "in", ["Lost", "Gone"])]}, "rule.all[0].value[1]", 'value "Gone"'),
        ({"all": [cond("consent.email", "=", "yes")]}, "rule.all[0]", "is not one of: denied, granted, pending"),
        ({"all": [cond("consent.fax", "=", "granted")]}, "rule.all[0]", 'unknown field "consent.fax"'),
        ({"all": [cond("attributes.bad-name", "=", 1)]}, "rule.all[0]", "unknown field"),
        ({"all": [cond("orders.count", "=", "3")]}, "rule.all[0]", "value must be a number"),
        ({"all": [cond("orders.count", "=", True)]}, "rule.all[0]", "value must be a number"),
        ({"all": [cond("vip", "=", 1)]}, "rule.all[0]", "true or false"),
        ({"all": [cond("created_at", ">", "yesterday")]}, "rule.all[0]", "ISO 8601 time"),
        ({"all": [cond("created_at", ">", "2024-01-01T00:00:00")]}, "rule.all[0]", "time zone"),
        ({"all": [cond("birth_date", "birthday_within", 400)]}, "rule.all[0]", "0 to 366"),
        ({"all": [cond("birth_date", "<", "1990-02-30")]}, "rule.all[0]", "a date such as"),
        ({"all": [cond("locale", "=", "x" * 257)]}, "rule.all[0]", "at most 256 characters"),
        ({"all": [cond("locale", "in", [])]}, "rule.all[0]", "a list of 1 to 100"),
        ({"all": [cond("orders.count", "in", list(range(101)))]}, "rule.all[0]", "a list of 1 to 100"),
        ({"all": [{"field": "locale", "op": "="}]}, "rule.all[0]", '"value" is missing'),
        ({"all": [{"field": "locale", "op": "=", "value": "en", "x": 1}]}, "rule.all[0]", 'unexpected key "x"'),
        ({"all": [cond("locale", "~", "en")]}, "rule.all[0]", 'unknown op "~"'),
        ({"all": []}, "rule.all", "non-empty list"),
        ({"all": [cond("vip", "=")], "any": [cond("vip", "=")]}, "rule", "exactly one key"),
        ({"none": [cond("vip", "=")]}, "rule", "exactly one key"),
        ([cond("vip", "=")], "rule", "exactly one key"),
        ({"all": ["vip"]}, "rule.all[0]", "a condition is an object"),
    ],
)
def test_a_bad_rule_names_the_condition(rule, path, message):
    err = error(rule)
    assert err.path == path
    assert message in err.message
    assert str(err) == f"{path}: {err.message}"


def test_an_unknown_field_suggests_the_nearest():
    assert (
        error({"all": [cond("ordrs.count", "=", 1)]}).message
        == 'unknown field "ordrs.count" (did you mean "orders.count"?)'
    )
    assert error({"all": [cond("consent.emial", "=", "granted")]}).message.endswith('(did you mean "consent.email"?)')
    assert error({"all": [cond("zzzz", "=", 1)]}).message == 'unknown field "zzzz"'


def test_limits():
    ok = {"all": [cond("orders.count", ">", i) for i in range(rules.MAX_CONDITIONS)]}
    rules.parse(ok)
    too_many = {"all": [*ok["all"], {"any": [cond("vip", "=")]}]}
    assert error(too_many).path == "rule.all[50].any[0]"

    def nested(levels):
        node = {"all": [cond("vip", "=")]}
        for _ in range(levels - 1):
            node = {"any": [node]}
        return node

    rules.parse(nested(rules.MAX_DEPTH))
    err = error(nested(rules.MAX_DEPTH + 1))
    assert "at most 5 levels" in err.message
    assert err.path == "rule" + ".any[0]" * 5


def test_a_bare_condition_is_wrapped():
    assert rules.parse(cond("vip", "=", False)) == {"all": [cond("vip", "=", False)]}


def test_normalization():
    parsed = rules.parse(
        {
            "any": [
                cond("created_at", ">=", "2024-01-01T01:00:00+01:00"),
                cond("orders.last_at", "within", "p1y2m3w4dt5h6m7s"),
                cond("tags", "in", ["a", "b", "a"]),
                cond("attributes.plan", "in", [1, True, 1.0, "1"]),
                {"field": "locale", "op": "exists"},
            ]
        }
    )
    assert parsed == {
        "any": [
            cond("created_at", ">=", "2024-01-01T00:00:00.000Z"),
            cond("orders.last_at", "within", "P1Y2M3W4DT5H6M7S"),
            cond("tags", "in", ["a", "b"]),
            cond("attributes.plan", "in", [1, True, "1"]),
            cond("locale", "exists", True),
        ]
    }


def test_every_field_has_a_type_with_operators():
    for name, typ in fields.FIELDS.items():
        assert typ in fields.OPS, name
        assert fields.field_type(name) == typ
    assert fields.field_type("attributes.plan") == "any"
    assert fields.field_type("consent.sms") == "string"
    assert fields.field_type("consent.fax") is None
    assert fields.field_type("orders") is None


# -- evaluation ------------------------------------------------------------------------

FACTS = {
    "tags": ["gold", "newsletter"],
    "attributes": {"plan": "pro", "seats": 12, "beta": True, "langs": ["en", "fr"]},
    "consent": {"email": "granted"},
    "locale": "en-GB",
    "address.country": "GB",
    "created_at": "2024-01-01T00:00:00.000Z",
    "source": ["shopify"],
    "birth_date": "1990-03-15",
    "orders.count": 3,
    "orders.net_spend": 12_000,
    "orders.first_at": "2025-06-01T00:00:00.000Z",
    "orders.last_at": "2025-12-01T00:00:00.000Z",
    "orders.aov": 4000,
    "orders.channels": ["web"],
    "orders.categories": [],
    "loyalty.tier": None,
    "loyalty.balance": 0,
    "rfm.r": 3,
    "rfm.f": 4,
    "rfm.m": 4,
    "rfm.segment": "Loyal",
    "ltv.historical": 12_000,
    "ltv.predicted": 8000,
    "vip": True,
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (cond("tags", "contains", "gold"), True),
        (cond("tags", "contains", "silver"), False),
        (cond("tags", "!=", "silver"), True),
        (cond("tags", "!=", "gold"), False),
        (cond("tags", "in", ["x", "newsletter"]), True),
        (cond("tags", "exists", True), True),
        (cond("orders.categories", "exists", False), True),  # an empty list is no value
        (cond("orders.categories", "contains", "shoes"), False),
        (cond("attributes.plan", "=", "pro"), True),
        (cond("attributes.plan", "contains", "pr"), True),
        (cond("attributes.seats", ">=", 12), True),
        (cond("attributes.seats", ">", "1"), False),  # a number is not compared with a string
        (cond("attributes.beta", "=", 1), False),  # true is not 1
        (cond("attributes.beta", "=", True), True),
        (cond("attributes.langs", "contains", "fr"), True),
        (cond("attributes.missing", "exists", False), True),
        (cond("attributes.missing", "!=", "x"), True),
        (cond("attributes.missing", "=", "x"), False),
        (cond("consent.email", "=", "granted"), True),
        (cond("consent.sms", "=", "denied"), False),
        (cond("consent.sms", "!=", "granted"), True),
        (cond("locale", "in", ["en-GB", "en-US"]), True),
        (cond("address.country", "!=", "GB"), False),
        (cond("loyalty.tier", "exists", False), True),
        (cond("loyalty.tier", "=", "gold"), False),
        (cond("loyalty.tier", "!=", "gold"), True),
        (cond("orders.count", ">", 2), True),
        (cond("orders.count", "<=", 2), False),
        (cond("orders.net_spend", "in", [12_000, 1]), True),
        (cond("created_at", "<", "2024-01-01T00:00:00.001Z"), True),
        (cond("created_at", "=", "2024-01-01T01:00:00+01:00"), True),
        (cond("orders.last_at", "older_than", "P3M"), True),
        (cond("orders.last_at", "older_than", "P4M"), False),
        (cond("orders.last_at", "within", "P4M"), True),
        (cond("orders.first_at", "within", "P6M"), False),
        (cond("birth_date", "birthday_within", 5), True),
        (cond("birth_date", "birthday_within", 4), False),
        (cond("birth_date", "<", "2000-01-01"), True),
        (cond("rfm.segment", "=", "Loyal"), True),
        (cond("vip", "=", True), True),
        (cond("vip", "!=", True), False),
    ],
)
def test_conditions(condition, expected):
    assert evaluate(rules.parse({"all": [condition]}), FACTS, NOW) is expected


def test_groups():
    yes, no = cond("vip", "=", True), cond("vip", "=", False)
    assert evaluate(rules.parse({"all": [yes, {"any": [no, yes]}]}), FACTS, NOW)
    assert not evaluate(rules.parse({"all": [yes, {"any": [no, no]}]}), FACTS, NOW)
    assert evaluate(rules.parse({"any": [no, {"all": [yes, yes]}]}), FACTS, NOW)


def test_a_customer_without_orders():
    facts = {**FACTS, "orders.last_at": None, "rfm.r": None}
    assert not evaluate(rules.parse({"all": [cond("orders.last_at", "older_than", "P90D")]}), facts, NOW)
    assert not evaluate(rules.parse({"all": [cond("orders.last_at", "within", "P90D")]}), facts, NOW)
    assert not evaluate(rules.parse({"all": [cond("rfm.r", "<", 3)]}), facts, NOW)
    assert evaluate(rules.parse({"all": [cond("rfm.r", "!=", 3)]}), facts, NOW)
    assert next_flip(rules.parse({"all": [cond("orders.last_at", "older_than", "P90D")]}), facts, NOW) is None


def test_older_than_flips_at_its_instant():
    rule = rules.parse({"all": [cond("orders.last_at", "older_than", "P90D")]})
    facts = {"orders.last_at": "2026-01-01T08:30:00.250Z"}
    flip = next_flip(rule, facts, "2026-01-02T00:00:00.000Z")
    assert flip == "2026-04-01T08:30:00.250Z"
    assert not evaluate(rule, facts, iso(parse(flip) - MS))
    assert evaluate(rule, facts, flip)
    assert next_flip(rule, facts, flip) is None


def test_calendar_months_and_years():
    rule = rules.parse({"all": [cond("orders.last_at", "older_than", "P1M")]})
    assert (
        next_flip(rule, {"orders.last_at": "2026-01-31T00:00:00Z"}, "2026-01-31T00:00:00Z")
        == "2026-02-28T00:00:00.000Z"
    )
    rule = rules.parse({"all": [cond("created_at", "older_than", "P1Y")]})
    assert next_flip(rule, {"created_at": "2024-02-29T10:00:00Z"}, "2024-03-01T00:00:00Z") == "2025-02-28T10:00:00.000Z"


def test_within_is_true_from_the_time_until_the_duration_has_passed():
    rule = rules.parse({"all": [cond("orders.last_at", "within", "PT1H")]})
    facts = {"orders.last_at": "2026-01-01T10:00:00.000Z"}
    assert next_flip(rule, facts, "2026-01-01T09:00:00Z") == "2026-01-01T10:00:00.000Z"
    assert evaluate(rule, facts, "2026-01-01T10:59:59.999Z")
    assert next_flip(rule, facts, "2026-01-01T10:00:00Z") == "2026-01-01T11:00:00.000Z"
    assert not evaluate(rule, facts, "2026-01-01T11:00:00Z")


@pytest.mark.parametrize(
    ("born", "today", "days", "expected"),
    [
        ("1990-03-15", "2026-03-15", 0, True),  # today counts as 0
        ("1990-03-15", "2026-03-14", 0, False),
        ("1990-03-15", "2026-03-08", 7, True),
        ("1990-03-15", "2026-03-07", 7, False),
        ("1990-03-15", "2026-03-16", 7, False),  # the next one is a year away
        ("1990-01-02", "2026-12-28", 7, True),  # across the new year
        ("2000-02-29", "2027-02-28", 0, True),  # Feb 28 in a year without Feb 29
        ("2000-02-29", "2027-03-01", 0, False),
        ("2000-02-29", "2028-02-28", 0, False),
        ("2000-02-29", "2028-02-29", 0, True),
        ("1990-03-15", "2026-03-16", 366, True),
    ],
)
def test_birthday_within(born, today, days, expected):
    rule = rules.parse({"all": [cond("birth_date", "birthday_within", days)]})
    facts = {"birth_date": born}
    assert evaluate(rule, facts, f"{today}T00:00:00Z") is expected
    assert evaluate(rule, facts, f"{today}T23:59:59.999Z") is expected


def test_birthday_flips_at_utc_midnights():
    rule = rules.parse({"all": [cond("birth_date", "birthday_within", 7)]})
    facts = {"birth_date": "1990-03-15"}
    assert next_flip(rule, facts, "2026-03-01T10:00:00Z") == "2026-03-08T00:00:00.000Z"
    assert next_flip(rule, facts, "2026-03-08T00:00:00Z") == "2026-03-16T00:00:00.000Z"
    always = rules.parse({"all": [cond("birth_date", "birthday_within", 366)]})
    assert next_flip(always, facts, "2026-03-01T10:00:00Z") is None


def test_a_flip_masked_by_another_condition_is_not_a_flip():
    # vip is false: the time condition flipping changes nothing
    rule = rules.parse({"all": [cond("vip", "=", True), cond("orders.last_at", "older_than", "P90D")]})
    facts = {"vip": False, "orders.last_at": "2026-01-01T00:00:00Z"}
    assert next_flip(rule, facts, NOW) is None
    # the first change is masked, the second is real
    rule = rules.parse(
        {
            "all": [
                cond("orders.last_at", "within", "P30D"),
                cond("created_at", "older_than", "P10D"),
            ]
        }
    )
    facts = {"orders.last_at": "2026-04-01T00:00:00Z", "created_at": "2026-03-01T00:00:00Z"}
    # created_at older_than 10 days from 03-11 (alone: false -> true), last order window opens 04-01
    assert next_flip(rule, facts, "2026-03-01T00:00:00Z") == "2026-04-01T00:00:00.000Z"


# -- the property: evaluate is constant until next_flip, and next_flip is a real flip --

BASE = datetime(2026, 3, 10, 12, tzinfo=UTC)
TIME_FIELDS = ["orders.last_at", "orders.first_at", "created_at"]


@st.composite
def durations(draw):
    parts = draw(st.tuples(*(st.integers(0, n) for n in (1, 13, 5, 40, 30, 70, 70))).filter(any))
    y, mo, w, d, h, mi, s = parts
    text = "P" + "".join(f"{n}{u}" for n, u in zip(parts[:4], "YMWD", strict=True) if n)
    if any(parts[4:]):
        text += "T" + "".join(f"{n}{u}" for n, u in zip(parts[4:], "HMS", strict=True) if n)
    return text, relativedelta(years=y, months=mo, days=7 * w + d, hours=h, minutes=mi, seconds=s)


instants = st.integers(-2 * 365 * 86_400_000, 2 * 365 * 86_400_000).map(lambda ms: BASE + timedelta(milliseconds=ms))


@st.composite
def conditions(draw):
    kind = draw(st.sampled_from(["older_than", "within", "birthday", "static", "absolute"]))
    if kind == "absolute":  # a comparison with a fixed time never flips by itself
        return cond(
            draw(st.sampled_from(TIME_FIELDS)), draw(st.sampled_from([">", "<=", "!="])), iso(draw(instants))
        ), None
    if kind == "birthday":
        return cond("birth_date", "birthday_within", draw(st.integers(0, 366))), None
    if kind == "static":
        return cond("vip", "=", draw(st.booleans())), None
    text, delta = draw(durations())
    return cond(draw(st.sampled_from(TIME_FIELDS)), kind, text), delta


@st.composite
def trees(draw, depth=0):
    items = []
    for _ in range(draw(st.integers(1, 3))):
        if depth < 2 and draw(st.booleans()):
            items.append(draw(trees(depth + 1)))
        else:
            items.append(draw(conditions()))
    return (draw(st.sampled_from(["all", "any"])), items)


def unpack(tree):
    """The rule and every (field, delta) pair its time conditions use."""
    key, items = tree
    out, deltas = [], []
    for item in items:
        if isinstance(item, tuple) and isinstance(item[0], str):
            rule, more = unpack(item)
            out.append(rule)
            deltas += more
        else:
            c, delta = item
            out.append(c)
            if delta is not None:
                deltas.append((c["field"], delta))
    return {key: out}, deltas


@st.composite
def facts_(draw):
    facts = {"vip": draw(st.booleans())}
    for f in TIME_FIELDS:
        if draw(st.integers(0, 5)):
            facts[f] = iso(draw(instants))
    if draw(st.integers(0, 5)):
        born = draw(st.dates(datetime(1950, 1, 1).date(), datetime(2010, 12, 31).date()))
        facts["birth_date"] = draw(st.sampled_from([born.isoformat(), f"{born.year // 4 * 4:04d}-02-29"]))
    return facts


@settings(max_examples=120, deadline=None)
@given(tree=trees(), facts=facts_(), now=instants)
def test_evaluate_is_constant_until_next_flip_which_is_a_real_flip(tree, facts, now):
    raw, deltas = unpack(tree)
    rule = rules.parse(raw)
    now_s = iso(now)
    flip = next_flip(rule, facts, now_s)
    before = evaluate(rule, facts, now_s)
    end = parse(flip) if flip else datetime(9999, 1, 1, tzinfo=UTC)
    # every instant a condition can change at, computed here independently, and just before it
    checks = {now}
    for field, delta in deltas:
        if field in facts:
            at = parse(facts[field])
            checks |= {at, at - MS, at + delta, at + delta - MS}
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    checks |= {day + timedelta(days=i) for i in range(1, min((end - day).days + 2, 800))}
    for t in sorted(c for c in checks if now <= c < end):
        assert evaluate(rule, facts, iso(t)) == before, (iso(t), flip)
    if flip is not None:
        assert parse(flip) > now
        assert evaluate(rule, facts, flip) != before


@settings(max_examples=60, deadline=None)
@given(tree=trees())
def test_parse_is_idempotent(tree):
    raw, _ = unpack(tree)
    parsed = rules.parse(raw)
    assert rules.parse(parsed) == parsed
