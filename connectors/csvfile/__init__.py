"""CSV import: a file of customers, uploaded through a presigned S3 URL, mapped column by
column onto customer fields, every row validated (docs/connectors.md, "CSV import").

Flow: ``POST /v1/connections`` (connector ``csv``, config ``mapping``) → ``POST
…/uploads`` (a presigned PUT URL; connectors/uploads.py) → PUT the file → ``POST …/sync
{"mode": "backfill", "upload_id"}``. The run streams the object from S3 with the csv
module (never the whole file in memory), 500 rows a page; each row becomes a customer
record, resolved by identity (external id, email, phone) under the config's ``source``,
or a rejected row with its number and reason. A first pass counts the rows, so the
run's progress has a total, and checks the header and the encoding before anything is
written: a file whose header lacks a mapped column, or that does not decode, fails the
run with the reason and imports nothing.

State ``{"upload_id", "run_id", "row", "total"}``: ``row`` is the next row to read, so a
run that crashed or paused resumes at that row (the rows before it are read again, only
to recognise duplicates, not written). Re-importing the same file writes nothing: every
row is ``unchanged``.

Rows are numbered as a spreadsheet shows them: the header is row 1. Rows whose cells are
all empty are skipped. A row with the same email or external id as an earlier row is
rejected (the first one is imported), so one file never updates a customer twice and a
re-import is a no-op.
"""
from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from connectors.csvfile.mapping import Plan, check_mapping, check_target
from connectors.sdk.base import Connector, Page, ReadContext, Stream
from connectors.sdk.errors import VendorError
from crm.customers.schemas import Source

PAGE_ROWS = 500
ColumnName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Target = Annotated[str, AfterValidator(check_target)]


class Config(BaseModel):
    """How to read the file: which column goes where, and how it is written."""

    model_config = ConfigDict(extra="forbid")

    mapping: dict[ColumnName, Target] = Field(
        min_length=1, max_length=100,
        description="CSV column header → customer field: email, phone, name.given, name.family, "
                    "birth_date, locale, gender, tags, external_id, attributes.<key>, "
                    "address.line1|line2|city|region|postal_code|country|label, "
                    "consent.email|sms|phone|postal. At least one of email, phone, external_id.",
        examples=[{"E-mail": "email", "First name": "name.given", "Id": "external_id"}])
    delimiter: Annotated[str, StringConstraints(min_length=1, max_length=1, pattern=r'^[^"\r\n]$')] = Field(
        default=",", description="one character, e.g. , ; or a tab")
    encoding: Literal["utf-8", "utf-8-sig", "latin-1"] = Field(
        default="utf-8-sig", description="utf-8-sig reads UTF-8 with or without a byte-order mark")
    tag_separator: Annotated[str, StringConstraints(min_length=1, max_length=3)] = Field(
        default=";", description="separates the tags within the tags column")
    source: Source = Field(default="csv", description="the system the rows' external ids belong to "
                                                      "(customers get external_ids[source])")

    @field_validator("mapping")
    @classmethod
    def _mapping(cls, value: dict[str, str]) -> dict[str, str]:
        return check_mapping(value)


class _Raw(io.RawIOBase):
    """Any ``read(n)`` stream (an S3 body) as a raw stream, for TextIOWrapper."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            super().close()


def _lines(body: Any, config: Config, where: list[int]) -> Iterator[str]:
    """The file's lines, decoded one by one (so a decoding error names its line)."""
    decoder = codecs.getincrementaldecoder(config.encoding)()
    for raw in io.BufferedReader(_Raw(body), buffer_size=64 * 1024):
        where[0] += 1
        try:
            yield decoder.decode(raw)
        except UnicodeDecodeError as exc:
            raise VendorError(f"the file is not valid {config.encoding} at line {where[0]} ({exc.reason} "
                              f"at character {exc.start + 1}): set the connection's config.encoding "
                              "(utf-8, utf-8-sig or latin-1)") from None
    try:
        tail = decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise VendorError(f"the file is not valid {config.encoding}: it ends inside a character "
                          f"({exc.reason})") from None
    if tail:
        yield tail


def rows(body: Any, config: Config) -> Iterator[tuple[int, list[str]]]:
    """Stream the file: first ``(1, header)``, then ``(row number, cells)`` of each row
    that is not empty. A decoding or CSV-structure error raises VendorError naming the row."""
    line = [0]
    reader = csv.reader(_lines(body, config, line), delimiter=config.delimiter)
    n = 0
    try:
        for cells in reader:
            n += 1
            if n == 1 or any(c.strip() for c in cells):
                yield n, cells
    except csv.Error as exc:
        raise VendorError(f"row {n + 1} (line {line[0]}) cannot be read as CSV: {exc}") from None
    finally:
        body.close()
    if n == 0:
        raise VendorError("the file is empty: the first row must be the header")


def _open(rc: ReadContext) -> Any:
    from connectors import uploads

    if not rc.upload_id:
        raise VendorError("a CSV import needs an upload: POST …/uploads, PUT the file, then sync "
                          "with its upload_id")
    try:
        return uploads.open_body(rc.tenant_id, rc.connection_id, rc.upload_id)
    except LookupError:
        raise VendorError(f"upload {rc.upload_id} has no file (uploads are kept 7 days): upload "
                          "it again") from None


def _plan(header: list[str], config: Config) -> Plan:
    try:
        return Plan.bind(header, config.mapping, config.tag_separator)
    except ValueError as exc:
        raise VendorError(str(exc), kind="config") from None


def count(body: Any, config: Config) -> int:
    """The file's data rows (not empty), after checking its header against the mapping."""
    it = rows(body, config)
    _, header = next(it)
    _plan(header, config)
    return sum(1 for _ in it)


class Customers(Stream):
    name = "customers"

    def read(self, rc: ReadContext, state: dict[str, Any]) -> Iterator[Page]:
        from crm import clock

        config: Config = rc.config
        resumed = state.get("upload_id") == rc.upload_id and state.get("run_id") == rc.run_id \
            and rc.run_id is not None
        start = int(state.get("row") or 2) if resumed else 2
        total = state.get("total") if resumed else None
        if total is None:
            total = count(_open(rc), config)
        base = {"upload_id": rc.upload_id, "run_id": rc.run_id, "total": total}
        it = rows(_open(rc), config)
        _, header = next(it)
        plan = _plan(header, config)
        page: list[Any] = []
        now = clock.now_iso()
        last, pages = start - 1, 0
        for n, cells in it:
            record = plan.record(n, cells, now)  # rows before ``start`` too: they rebuild the duplicates
            if n < start:
                continue
            page.append(record)
            last = n
            if len(page) == PAGE_ROWS:
                yield Page(page, {**base, "row": n + 1}, total=total)
                page, now, pages = [], clock.now_iso(), pages + 1
        if page or (not pages and start == 2):  # an empty file still reports its total (0)
            yield Page(page, {**base, "row": last + 1}, total=total)


class CsvFile(Connector):
    name = "csv"
    kind = "file"
    version = "1.0.0"
    title = "CSV import"
    Config = Config
    streams = (Customers,)

    @classmethod
    def source(cls, config: Any) -> str:
        return config.source

    def check(self, config: Any, client: Any) -> None:
        """Nothing to reach: the config was validated when it was saved."""
