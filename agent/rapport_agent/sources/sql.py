"""A SQL table as a source (SQLite or PostgreSQL, one code path through SQLAlchemy Core):
scan by an ``updated_at`` watermark, read, update and insert rows by key.

The table is reflected, so the agent needs only the names in the config. A scan reads
rows with ``updated_at >= watermark`` (minus a small overlap for time columns, so a row
committed late with an earlier time is still seen) in (updated_at, key) order, page by
page; rows read twice are harmless, the bases make them upload nothing. On SQLite, date
and time columns are read as their stored text (SQLite has no time type; parsing a
format the agent did not write would fail).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

OVERLAP = timedelta(seconds=2)
PAGE = 500


def engine_for(dsn: str) -> sa.Engine:
    """``postgresql://`` runs on psycopg 3 (the only PostgreSQL driver the agent ships)."""
    if dsn.startswith("postgresql://"):
        dsn = "postgresql+psycopg://" + dsn.removeprefix("postgresql://")
    return sa.create_engine(dsn, pool_pre_ping=True)


def _text_times(inspector: Any, table: Any, column_info: dict[str, Any]) -> None:
    if isinstance(column_info["type"], (sa.Date, sa.DateTime, sa.Time)):
        column_info["type"] = sa.String()


def encode_mark(value: Any) -> Any:
    """A watermark value as JSON."""
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    return value


def decode_mark(value: Any) -> Any:
    if isinstance(value, dict) and "datetime" in value:
        return datetime.fromisoformat(value["datetime"])
    return value


def earlier(mark: Any) -> Any:
    """Where a scan after ``mark`` starts: ``OVERLAP`` before it for times (datetimes, time
    text in ISO form, unix seconds or milliseconds), so a row whose transaction committed
    after a later one's is still read; other values as they are."""
    if mark is None or isinstance(mark, bool):
        return mark
    if isinstance(mark, datetime):
        return mark - OVERLAP
    if isinstance(mark, (int, float)):
        return mark - OVERLAP.total_seconds() * (1000 if mark > 10**11 else 1)
    if isinstance(mark, str):
        try:
            when = datetime.fromisoformat(mark.strip())
        except ValueError:
            return mark
        sep = "T" if "T" in mark else " "
        return (when - OVERLAP).strftime(f"%Y-%m-%d{sep}%H:%M:%S")  # shorter: sorts before any fraction
    return mark


@dataclass
class Row:
    key: str
    updated_at: Any
    values: dict[str, Any]  # column -> value


class Table:
    """One mapped table: ``key`` and ``updated_at`` columns, and the mapped ``columns``."""

    def __init__(self, engine: sa.Engine, name: str, key: str, updated_at: str, columns: list[str]):
        self.engine = engine
        schema, _, table = name.rpartition(".")
        listeners = [("column_reflect", _text_times)] if engine.dialect.name == "sqlite" else []
        self.table = sa.Table(table, sa.MetaData(), schema=schema or None, autoload_with=engine, listeners=listeners)
        missing = [c for c in [key, updated_at, *columns] if c not in self.table.c]
        if missing:
            raise LookupError(f"table {name} has no column {', '.join(missing)}")
        self.key = self.table.c[key]
        self.updated_at = self.table.c[updated_at]
        self.columns = list(dict.fromkeys([key, updated_at, *columns]))

    def _key(self, key: str) -> Any:
        try:
            python = self.key.type.python_type
        except NotImplementedError:
            return key
        return int(key) if python is int else key

    def _select(self) -> sa.Select:
        return sa.select(*(self.table.c[c] for c in self.columns))

    def _row(self, row: Any) -> Row:
        values = dict(row._mapping)
        return Row(str(values[self.key.name]), values[self.updated_at.name], values)

    def scan(self, mark: Any, page: int = PAGE) -> Iterator[list[Row]]:
        """Pages of rows changed at or after ``mark`` (None: all), oldest first."""
        start = earlier(mark)
        query = self._select().where(self.updated_at.is_not(None))
        if start is not None:
            query = query.where(self.updated_at >= start)
        query = query.order_by(self.updated_at, self.key).limit(page)
        last: tuple[Any, Any] | None = None
        with self.engine.connect() as conn:
            while True:
                q = query
                if last is not None:
                    q = q.where(
                        sa.or_(self.updated_at > last[0], sa.and_(self.updated_at == last[0], self.key > last[1]))
                    )
                rows = [self._row(r) for r in conn.execute(q)]
                if not rows:
                    return
                yield rows
                if len(rows) < page:
                    return
                tail = rows[-1]
                last = (tail.updated_at, tail.values[self.key.name])

    def get(self, key: str) -> Row | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._select().where(self.key == self._key(key))).first()
        return None if row is None else self._row(row)

    def touch_value(self, current: Any) -> Any:
        """A new ``updated_at`` in the form the column already has."""
        if isinstance(current, datetime) or isinstance(self.updated_at.type, sa.DateTime):
            return sa.func.now() if self.engine.dialect.name != "sqlite" else datetime.now(UTC).isoformat()
        if isinstance(current, (int, float)) and not isinstance(current, bool):
            return int(time.time() * 1000) if current > 10**11 else int(time.time())
        now = datetime.now(UTC)
        if isinstance(current, str) and "T" not in current:
            text = now.strftime("%Y-%m-%d %H:%M:%S")
            return text + now.strftime(".%f")[:4] if "." in current else text
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"

    def _prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for column, value in values.items():
            if isinstance(value, (list, dict)) and not isinstance(self.table.c[column].type, (sa.JSON, sa.ARRAY)):
                value = json.dumps(value)
            out[column] = value
        return out

    def update(self, key: str, values: dict[str, Any], current_updated_at: Any = None) -> bool:
        """Set ``values`` (column -> value) and ``updated_at`` of one row: True if it exists."""
        stmt = (
            sa.update(self.table)
            .where(self.key == self._key(key))
            .values(**self._prepare(values), **{self.updated_at.name: self.touch_value(current_updated_at)})
        )
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount > 0

    def insert(self, values: dict[str, Any], key: str | None) -> str:
        """Insert a row; ``key`` None lets the database choose it (an integer primary key).
        Returns the row's key."""
        row = self._prepare(values)
        if key is not None:
            row[self.key.name] = self._key(key)
        sample = self.engine.connect()
        try:
            current = sample.execute(sa.select(self.updated_at).limit(1)).scalar()
        finally:
            sample.close()
        row[self.updated_at.name] = self.touch_value(current)
        with self.engine.begin() as conn:
            result = conn.execute(sa.insert(self.table).values(**row))
            if key is not None:
                return key
            pk = result.inserted_primary_key
            if pk is None or pk[0] is None:
                raise LookupError(f"{self.table.name}: the database did not return the new row's key")
            return str(pk[0])

    def find(self, values: dict[str, Any]) -> str | None:
        """The key of a row holding exactly ``values`` (after a crash between an insert and
        recording it: the insert is not repeated)."""
        query = sa.select(self.key)
        for column, value in self._prepare(values).items():
            query = query.where(self.table.c[column].is_(None) if value is None else self.table.c[column] == value)
        with self.engine.connect() as conn:
            found = conn.execute(query.order_by(self.key.desc()).limit(1)).scalar()
        return None if found is None else str(found)

    def key_is_generated(self) -> bool:
        """An integer primary key the database numbers itself."""
        try:
            return self.key.type.python_type is int and self.key.primary_key
        except NotImplementedError:
            return False
