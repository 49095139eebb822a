"""The agent's durable state: one SQLite file (WAL, ``synchronous=FULL``), each step one
transaction.

- ``records``: the outbox. ``seq`` is SQLite's AUTOINCREMENT rowid, so it is strictly
  increasing and never reused, also across crashes. A record is ``queued`` until the API
  answers for it (then ``acked``) or it is ``parked`` with a reason (rejected by the API,
  failing alone, or unreadable locally). Parked records are never sent again.
- ``bases``: per (source, table, row key, field) the value the cloud last confirmed
  (``synced``), the value last queued/parked/synced (``ref``, what a scan compares with)
  and the seq of the queued record carrying it (``pending``). Values are JSON; a NULL
  column means "never".
- ``links``: cloud customer id -> local row, for rows this agent inserted from the cloud
  or learned from an upload's result.
- ``writebacks``: local writes decided by a stored upload result but not yet applied; they
  are applied before anything else, so a crash between the two loses none.
- ``files``: the CSV files already enqueued (by content hash).
- ``kv``: cursor, hlc, agent id, source, scan watermarks, last error, last sync.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import clock
from rapport_agent import hlc as hlcs
from rapport_agent.mapping import MISSING, Ref

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    tbl TEXT NOT NULL,
    row_key TEXT NOT NULL,
    external_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'parked', 'acked')),
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    errors TEXT,
    status TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_state ON records (state, seq);
CREATE TABLE IF NOT EXISTS bases (
    source TEXT NOT NULL,
    tbl TEXT NOT NULL,
    row_key TEXT NOT NULL,
    field TEXT NOT NULL,
    synced TEXT,
    ref TEXT,
    pending INTEGER,
    PRIMARY KEY (source, tbl, row_key, field)
);
CREATE TABLE IF NOT EXISTS links (
    customer_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    row_key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS links_by_row ON links (source, row_key);
CREATE TABLE IF NOT EXISTS writebacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    row_key TEXT NOT NULL,
    field TEXT NOT NULL,
    expected TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    digest TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    done_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


def _dump(value: Any) -> str | None:
    return None if value is MISSING else json.dumps(value, sort_keys=True, default=str)


def _load(text: str | None) -> Any:
    return MISSING if text is None else json.loads(text)


@dataclass(frozen=True)
class Record:
    seq: int
    kind: str
    source: str
    tbl: str
    row_key: str
    external_id: str
    payload: dict[str, Any]
    state: str
    attempts: int
    reason: str | None
    created_at: str

    def wire(self) -> dict[str, Any]:
        """The record as uploaded."""
        return {"seq": self.seq, **self.payload}


@dataclass(frozen=True)
class Writeback:
    id: int
    source: str
    row_key: str
    field: str
    expected: Any
    value: Any


# how far past the server's now the clock may stand before it is taken for this machine's skew
CLOCK_TOLERANCE_MS = 1_000


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self._depth = 0

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction (nested calls join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._depth = 0

    # --- kv ------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        with self.tx() as db:
            if value is None:
                db.execute("DELETE FROM kv WHERE k = ?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, json.dumps(value, default=str)))

    # --- the clock -----------------------------------------------------------------------

    def hlc(self) -> hlcs.HLC:
        value = self.get("hlc")
        return hlcs.HLC.parse(value) if value else hlcs.ZERO

    def tick(self, wall_ms: int | None = None) -> str:
        """The HLC of a local event (persisted in the current transaction); ``wall_ms``: this
        machine's clock (tests pass one), the real one by default. The wall clock
        is corrected by the offset learnt from the server's answers (``observe``), so a
        clock running an hour ahead cannot make an edit look newer than a later cloud
        edit, nor one running behind make it look older; the HLC's max() keeps order
        with every cloud time already seen."""
        with self.tx():
            wall = (hlcs.wall_ms() if wall_ms is None else wall_ms) + int(self.get("clock_offset_ms") or 0)
            value = hlcs.tick(self.hlc(), wall)
            self.put("hlc", str(value))
        return str(value)

    def observe(self, remote: str | None, local_ms: int | None = None) -> None:
        """A remote time seen. With ``local_ms`` (this machine's wall clock when the server
        answered) it is the server's now, and their difference is the clock offset kept for
        ``tick`` (the latest answer's: the offset is off by at most half a round trip)."""
        seen = hlcs.remote(remote)
        if seen is None:
            return
        with self.tx():
            last = self.hlc()
            if seen > last:
                self.put("hlc", str(hlcs.observe(last, seen)))
            elif local_ms is not None and last.pt > seen.pt + CLOCK_TOLERANCE_MS:
                # ahead of the server's now: only this machine's uncorrected clock puts it
                # there (every remote time is at most the server's now), and keeping it would
                # carry the skew into every later stamp through the HLC's max()
                self.put("hlc", str(seen))
            if local_ms is not None:
                self.put("clock_offset_ms", seen.pt - local_ms)

    # --- bases ---------------------------------------------------------------------------

    def refs(self, source: str, tbl: str, row_key: str) -> dict[str, Ref]:
        rows = self.db.execute(
            "SELECT field, synced, ref, pending FROM bases WHERE source = ? AND tbl = ? AND row_key = ?",
            (source, tbl, row_key),
        )
        return {r["field"]: Ref(_load(r["synced"]), _load(r["ref"]), r["pending"]) for r in rows}

    def set_ref(self, source: str, tbl: str, row_key: str, field: str, ref: Ref) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO bases (source, tbl, row_key, field, synced, ref, pending) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (source, tbl, row_key, field, _dump(ref.synced), _dump(ref.ref), ref.pending),
            )

    # --- the outbox ----------------------------------------------------------------------

    def enqueue(
        self,
        *,
        kind: str,
        source: str,
        tbl: str,
        row_key: str,
        external_id: str,
        payload: dict[str, Any],
        values: dict[str, Any],
        state: str = "queued",
        reason: str | None = None,
    ) -> int:
        """Add a record; ``values`` (field -> value it carries) become the fields' ``ref``
        with the record as ``pending``. Returns its seq."""
        now = clock.now_iso()
        with self.tx() as db:
            cur = db.execute(
                "INSERT INTO records (kind, source, tbl, row_key, external_id, payload, state, reason, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, source, tbl, row_key, external_id, json.dumps(payload, default=str), state, reason, now, now),
            )
            seq = int(cur.lastrowid or 0)
            refs = self.refs(source, tbl, row_key)
            for field, value in values.items():
                old = refs.get(field, Ref())
                pending = seq if state == "queued" else None
                self.set_ref(source, tbl, row_key, field, Ref(old.synced, value, pending))
        return seq

    def park_local(
        self,
        *,
        kind: str,
        source: str,
        tbl: str,
        row_key: str,
        external_id: str,
        reason: str,
        payload: dict[str, Any] | None = None,
    ) -> int:
        """A record that cannot even be built (a bad CSV row, an unreadable order): parked
        here with its reason, never sent."""
        return self.enqueue(
            kind=kind,
            source=source,
            tbl=tbl,
            row_key=row_key,
            external_id=external_id,
            payload=payload or {},
            values={},
            state="parked",
            reason=reason[:500],
        )

    def _record(self, row: sqlite3.Row) -> Record:
        return Record(
            row["seq"],
            row["kind"],
            row["source"],
            row["tbl"],
            row["row_key"],
            row["external_id"],
            json.loads(row["payload"]),
            row["state"],
            row["attempts"],
            row["reason"],
            row["created_at"],
        )

    def queued(self, limit: int = 100, after: int = 0) -> list[Record]:
        rows = self.db.execute(
            "SELECT * FROM records WHERE state = 'queued' AND seq > ? ORDER BY seq LIMIT ?", (after, limit)
        )
        return [self._record(r) for r in rows]

    def record(self, seq: int) -> Record | None:
        row = self.db.execute("SELECT * FROM records WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else self._record(row)

    def parked(self, limit: int = 50) -> list[Record]:
        rows = self.db.execute("SELECT * FROM records WHERE state = 'parked' ORDER BY seq DESC LIMIT ?", (limit,))
        return [self._record(r) for r in rows]

    def ack(self, seq: int, status: str) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE records SET state = 'acked', status = ?, updated_at = ? WHERE seq = ?",
                (status, clock.now_iso(), seq),
            )

    def park(self, seq: int, reason: str, errors: Any = None) -> None:
        """Park a queued record: it is not sent again; its fields keep the parked value as
        ``ref`` (an unchanged local value is not queued again) but lose ``pending``."""
        with self.tx() as db:
            db.execute(
                "UPDATE records SET state = 'parked', reason = ?, errors = ?, updated_at = ? WHERE seq = ?",
                (reason[:500], None if errors is None else json.dumps(errors, default=str), clock.now_iso(), seq),
            )
            db.execute("UPDATE bases SET pending = NULL WHERE pending = ?", (seq,))

    def attempt(self, seqs: list[int]) -> None:
        with self.tx() as db:
            db.executemany("UPDATE records SET attempts = attempts + 1 WHERE seq = ?", [(s,) for s in seqs])

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT state, COUNT(*) FROM records GROUP BY state").fetchall()
        out = {"queued": 0, "parked": 0, "acked": 0}
        out.update({r[0]: r[1] for r in rows})
        return out

    def oldest_queued_at(self) -> str | None:
        row = self.db.execute("SELECT MIN(created_at) FROM records WHERE state = 'queued'").fetchone()
        return row[0] if row else None

    def prune(self, keep: int = 10_000) -> None:
        """Forget acked records beyond the newest ``keep`` (bases keep what matters)."""
        with self.tx() as db:
            db.execute(
                "DELETE FROM records WHERE state = 'acked' AND seq < "
                "(SELECT COALESCE(MIN(seq), 0) FROM (SELECT seq FROM records WHERE state = 'acked' "
                "ORDER BY seq DESC LIMIT ?))",
                (keep,),
            )

    # --- links ---------------------------------------------------------------------------

    def link(self, customer_id: str, source: str, row_key: str) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO links (customer_id, source, row_key) VALUES (?, ?, ?)",
                (customer_id, source, row_key),
            )

    def linked_row(self, customer_id: str) -> tuple[str, str] | None:
        row = self.db.execute("SELECT source, row_key FROM links WHERE customer_id = ?", (customer_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def linked_customer(self, source: str, row_key: str) -> str | None:
        row = self.db.execute(
            "SELECT customer_id FROM links WHERE source = ? AND row_key = ?", (source, row_key)
        ).fetchone()
        return None if row is None else row[0]

    # --- write-backs ---------------------------------------------------------------------

    def add_writeback(self, source: str, row_key: str, field: str, expected: Any, value: Any) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO writebacks (source, row_key, field, expected, value) VALUES (?, ?, ?, ?, ?)",
                (source, row_key, field, json.dumps(expected), json.dumps(value)),
            )

    def writebacks(self) -> list[Writeback]:
        rows = self.db.execute("SELECT * FROM writebacks ORDER BY id")
        return [
            Writeback(r["id"], r["source"], r["row_key"], r["field"], json.loads(r["expected"]), json.loads(r["value"]))
            for r in rows
        ]

    def drop_writebacks(self, ids: list[int]) -> None:
        with self.tx() as db:
            db.executemany("DELETE FROM writebacks WHERE id = ?", [(i,) for i in ids])

    # --- files ---------------------------------------------------------------------------

    def file_done(self, digest: str) -> bool:
        return self.db.execute("SELECT 1 FROM files WHERE digest = ?", (digest,)).fetchone() is not None

    def mark_file(self, digest: str, name: str) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO files (digest, name, done_at) VALUES (?, ?, ?)", (digest, name, clock.now_iso())
            )
