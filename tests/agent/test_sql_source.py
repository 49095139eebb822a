"""The SQL source on SQLite: scan pages past a watermark (rows at the same time are all
read), write-down and insert by key, the watermark's overlap."""

from __future__ import annotations

from datetime import datetime

from rapport_agent.sources.sql import Table, decode_mark, earlier, encode_mark, engine_for


def test_scan_pages_in_time_order_and_same_time_rows_are_all_read(local_db):
    for i in range(7):
        local_db.add(email=f"r{i}@example.com", updated_at="2026-01-01 10:00:00")
    local_db.add(email="late@example.com", updated_at="2026-01-01 10:00:05")
    table = Table(engine_for(local_db.dsn), "customers", "id", "updated_at", ["email"])
    pages = list(table.scan(None, page=3))
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [r.key for p in pages for r in p] == [str(i) for i in range(1, 9)]
    again = [r.key for p in table.scan(pages[-1][-1].updated_at) for r in p]
    assert again == ["8"]
    # the overlap re-reads rows up to 2 s before the mark
    assert [r.key for p in table.scan("2026-01-01 10:00:01") for r in p] == [str(i) for i in range(1, 9)]


def test_write_down_update_insert_and_find(local_db):
    key = local_db.add(email="a@example.com", updated_at="2026-01-01 10:00:00.000")
    table = Table(engine_for(local_db.dsn), "customers", "id", "updated_at", ["email", "first_name"])
    before = table.get(str(key))
    assert table.update(str(key), {"email": "b@example.com"}, before.updated_at)
    after = table.get(str(key))
    assert after.values["email"] == "b@example.com" and after.updated_at > before.updated_at
    assert " " in after.updated_at and "." in after.updated_at  # the column's own format
    assert table.key_is_generated()
    new = table.insert({"email": "c@example.com", "first_name": "Cid"}, None)
    assert table.get(new).values["first_name"] == "Cid"
    assert table.find({"email": "c@example.com", "first_name": "Cid"}) == new
    assert table.find({"email": "nobody@example.com"}) is None


def test_watermarks_round_trip_and_start_earlier():
    when = datetime(2026, 1, 1, 10, 0, 5)
    assert decode_mark(encode_mark(when)) == when
    assert earlier("2026-01-01T10:00:05.123Z") == "2026-01-01T10:00:03"
    assert earlier(1_700_000_000) == 1_699_999_998
    assert earlier("abc") == "abc"
