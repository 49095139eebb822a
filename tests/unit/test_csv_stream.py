"""The CSV import's stream on its own: pages, totals, row numbers, and resuming a crashed
run at exactly the row after its last checkpoint (the S3 object is an in-memory body)."""
from __future__ import annotations

import io

import pytest

from connectors import uploads
from connectors.csvfile import PAGE_ROWS, Config, CsvFile, Customers
from connectors.sdk.base import CustomerRecord, ReadContext, Rejected
from connectors.sdk.errors import VendorError

MAPPING = {"Id": "external_id", "E-mail": "email", "First name": "name.given", "Country": "address.country",
           "Street": "address.line1", "Tags": "tags"}


def make_csv(n: int) -> bytes:
    lines = ["Id,E-mail,First name,Street,Country,Tags"]
    for i in range(1, n + 1):
        email = f"p{i}@example.com"
        if i == 600:
            email = "p10@example.com"  # a duplicate of row 11 (data row 10), past the first page
        if i == 7:
            email = "not-an-email"
        lines.append(f"c{i},{email},P{i},{i} Main St,us,a;b")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture()
def upload(monkeypatch):
    files: dict[str, bytes] = {}
    opened: list[str] = []

    def open_body(tenant_id, connection_id, upload_id):
        opened.append(upload_id)
        if upload_id not in files:
            raise LookupError(upload_id)
        return io.BytesIO(files[upload_id])

    monkeypatch.setattr(uploads, "open_body", open_body)
    files["opened"] = opened  # type: ignore[assignment]
    return files


def ctx(upload_id="upl_01J0000000000000000000000A", run_id="run_1", **config) -> ReadContext:
    return ReadContext(config=Config(**{"mapping": MAPPING, **config}), client=None, mode="backfill",
                       tenant_id="t1", connection_id="con_1", run_id=run_id, upload_id=upload_id)


def verdicts(records):
    """What a page says about its rows (records carry the time they were read, too)."""
    return [(type(r).__name__, r.external_id, getattr(r, "profile", None), getattr(r, "reason", None))
            for r in records]


def read_all(rc, state=None):
    return list(Customers().read(rc, dict(state or {})))


def test_pages_of_500_rows_with_the_total_and_the_next_row_as_state(upload):
    upload["upl_01J0000000000000000000000A"] = make_csv(1234)
    pages = read_all(ctx())
    assert [len(p.records) for p in pages] == [PAGE_ROWS, PAGE_ROWS, 234]
    assert {p.total for p in pages} == {1234}
    assert [p.state["row"] for p in pages] == [502, 1002, 1236]  # the header is row 1
    assert pages[0].state["upload_id"] == "upl_01J0000000000000000000000A"
    records = [r for p in pages for r in p.records]
    first = records[0]
    assert isinstance(first, CustomerRecord) and first.external_id == "c1"
    assert first.profile == {"email": "p1@example.com", "name": {"given": "P1"}, "tags": ["a", "b"],
                             "addresses": [{"line1": "1 Main St", "country": "US"}]}
    rejected = {r.external_id: r.reason for r in records if isinstance(r, Rejected)}
    assert rejected == {
        "row 8": rejected["row 8"], "row 601": rejected["row 601"]}
    assert rejected["row 8"].startswith("row 8: column E-mail: not a valid email address")
    assert rejected["row 601"] == ("row 601: column E-mail: the same email as row 11; only the first "
                                   "row of a customer is imported")


def test_a_crashed_run_resumes_at_the_row_after_its_checkpoint(upload):
    upload["upl_01J0000000000000000000000A"] = make_csv(1234)
    whole = read_all(ctx())
    # the run crashed while writing its second page: the checkpoint is the first page's state
    resumed = read_all(ctx(), whole[0].state)
    assert [len(p.records) for p in resumed] == [PAGE_ROWS, 234]
    assert verdicts(resumed[0].records) == verdicts(whole[1].records)  # the same rows, the same verdicts
    assert verdicts(resumed[1].records) == verdicts(whole[2].records)
    # the duplicate after the checkpoint is still recognised (rows before it are re-read)
    assert any(isinstance(r, Rejected) and r.external_id == "row 601" for r in resumed[0].records)
    # the first record is exactly row 502 (data row 501)
    assert resumed[0].records[0].external_id == "c501"
    # checkpointed after the last page: nothing more to read
    assert read_all(ctx(), whole[-1].state) == []


def test_a_new_run_or_another_upload_starts_from_the_first_row(upload):
    upload["upl_01J0000000000000000000000A"] = make_csv(600)
    upload["upl_01J0000000000000000000000B"] = make_csv(3)
    done = read_all(ctx())[-1].state
    again = read_all(ctx(run_id="run_2"), done)
    assert sum(len(p.records) for p in again) == 600
    other = read_all(ctx(upload_id="upl_01J0000000000000000000000B"), done)
    assert [r.external_id for p in other for r in p.records] == ["c1", "c2", "c3"]
    assert other[0].total == 3


def test_the_total_is_counted_once_per_run(upload):
    upload["upl_01J0000000000000000000000A"] = make_csv(1200)
    opened = upload["opened"]
    pages = read_all(ctx())
    assert len(opened) == 2  # one pass to count and check, one to read
    opened.clear()
    read_all(ctx(), pages[0].state)
    assert len(opened) == 1  # resumed: the total comes from the state


def test_blank_rows_are_skipped_but_keep_their_numbers_and_an_empty_file_reports_zero(upload):
    upload["upl_01J0000000000000000000000A"] = b"Id,E-mail\r\nc1,a@example.com\r\n,\r\n\r\nc2,b@example.com\r\n"
    [page] = read_all(ctx(mapping={"Id": "external_id", "E-mail": "email"}))
    assert page.total == 2 and [r.external_id for r in page.records] == ["c1", "c2"]
    assert page.state["row"] == 6
    upload["upl_01J0000000000000000000000A"] = b"Id,E-mail\n"
    [page] = read_all(ctx(mapping={"Id": "external_id", "E-mail": "email"}))
    assert page.total == 0 and page.records == []


def test_a_header_without_a_mapped_column_fails_the_run_before_any_row(upload):
    upload["upl_01J0000000000000000000000A"] = b"Id,Mail\nc1,a@example.com\n"
    with pytest.raises(VendorError, match=r"no column 'E-mail'.*header is: 'Id', 'Mail'"):
        read_all(ctx(mapping={"Id": "external_id", "E-mail": "email"}))


def test_encoding_delimiter_and_quoted_newlines(upload):
    # latin-1, semicolons, a quoted value spanning two lines: still one row
    data = 'Id;E-mail;Note\nc1;a@example.com;"line one\nline two"\nc2;b@example.com;Müller\n'.encode("latin-1")
    upload["upl_01J0000000000000000000000A"] = data
    mapping = {"Id": "external_id", "E-mail": "email", "Note": "attributes.note"}
    [page] = read_all(ctx(mapping=mapping, delimiter=";", encoding="latin-1"))
    assert [r.profile["attributes"]["note"] for r in page.records] == ["line one\nline two", "Müller"]
    assert page.state["row"] == 4
    with pytest.raises(VendorError, match="not valid utf-8 at line 4"):
        read_all(ctx(mapping=mapping, delimiter=";", encoding="utf-8"))


def test_a_missing_upload_fails_with_the_reason(upload):
    with pytest.raises(VendorError, match="has no file"):
        read_all(ctx())


def test_the_config_names_the_source_of_external_ids():
    assert CsvFile.source(Config(mapping=MAPPING)) == "csv"
    assert CsvFile.source(Config(mapping=MAPPING, source="legacy-erp")) == "legacy-erp"
