"""Local changes into the outbox: scan each SQL table past its watermark and each CSV
drop-folder file once, compare every mapped field with its bases and queue only the
fields that changed (a merely touched row queues nothing), each record stamped with the
HLC of the moment the agent saw it."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import exc as sa_exc

from rapport_agent import crash, mapping
from rapport_agent.config import Config, ConfigError, Customers, Orders, Source
from rapport_agent.outbox import Store
from rapport_agent.sources.sql import Table, decode_mark, encode_mark, engine_for

log = logging.getLogger("rapport_agent.scan")

CUSTOMERS, ORDERS = "customers", "orders"
ORDER_FIELD = "*"  # an order's bases: one digest of its whole record


@dataclass
class Local:
    """One configured source with its tables opened."""

    name: str
    config: Source
    customers: Table | None = None
    orders: Table | None = None

    def external_id(self, key: str) -> str:
        return f"{self.config.prefix}{key}"


def open_sources(config: Config) -> list[Local]:
    out = []
    for i, source in enumerate(config.sources):
        local = Local(config.source_name(i), source)
        if source.kind == "sql":
            assert source.dsn
            engine = engine_for(source.dsn)
            for section in (CUSTOMERS, ORDERS):
                mapping_ = getattr(source, section)
                if mapping_ is not None:
                    assert mapping_.table and mapping_.updated_at
                    try:
                        table = Table(
                            engine, mapping_.table, mapping_.key, mapping_.updated_at, list(mapping_.fields.values())
                        )
                    except sa_exc.NoSuchTableError:
                        raise ConfigError(
                            f"sources.{i}.{section}.table: no table {mapping_.table!r} in {local.name}"
                        ) from None
                    except LookupError as exc:
                        raise ConfigError(f"sources.{i}.{section}: {exc}") from None
                    setattr(local, section, table)
        out.append(local)
    return out


def customer_values(mapping_: Customers, row: dict[str, Any]) -> dict[str, Any]:
    """A local row's mapped fields, normalized (path -> value)."""
    return {path: mapping.normalize(path, row.get(column)) for path, column in mapping_.fields.items()}


def queue_customer(store: Store, local: Local, key: str, values: dict[str, Any]) -> int | None:
    """Queue the changed fields of one customer row; None when nothing changed."""
    mapping_ = local.config.customers
    assert mapping_ is not None
    refs = store.refs(local.name, CUSTOMERS, key)
    changes = mapping.changed(values, refs)
    if not changes:
        return None
    with store.tx():
        stamp = store.tick()
        payload: dict[str, Any] = {
            "kind": "customer",
            "external_id": local.external_id(key),
            "hlc": stamp,
            "fields": mapping.customer_fields(changes, refs, {p: mapping_.rule(p) for p in changes}, stamp),
        }
        if (customer_id := store.linked_customer(local.name, key)) is not None:
            payload["customer_id"] = customer_id
        return store.enqueue(
            kind="customer",
            source=local.name,
            tbl=CUSTOMERS,
            row_key=key,
            external_id=local.external_id(key),
            payload=payload,
            values=changes,
        )


def queue_order(store: Store, local: Local, key: str, row: dict[str, Any], updated_at: Any) -> int | None:
    mapping_: Orders | None = local.config.orders
    assert mapping_ is not None
    external_id = local.external_id(key)
    try:
        order = mapping.order(
            row,
            mapping_.fields,
            external_id,
            currency=mapping_.currency,
            channel=mapping_.channel,
            customer_prefix=local.config.prefix,
            updated_at=updated_at,
        )
    except ValueError as exc:
        digest = mapping.digest({"unreadable": {k: str(v) for k, v in row.items()}})
        if store.refs(local.name, ORDERS, key).get(ORDER_FIELD, mapping.Ref()).ref == digest:
            return None
        with store.tx():
            store.set_ref(local.name, ORDERS, key, ORDER_FIELD, mapping.Ref(mapping.MISSING, digest, None))
            return store.park_local(
                kind="order",
                source=local.name,
                tbl=ORDERS,
                row_key=key,
                external_id=external_id,
                reason=f"order {key}: {exc}",
            )
    digest = mapping.digest({k: v for k, v in order.items() if k != "updated_at"})
    if store.refs(local.name, ORDERS, key).get(ORDER_FIELD, mapping.Ref()).ref == digest:
        return None
    with store.tx():
        stamp = store.tick()
        payload = {"kind": "order", "external_id": external_id, "hlc": stamp, "order": order}
        return store.enqueue(
            kind="order",
            source=local.name,
            tbl=ORDERS,
            row_key=key,
            external_id=external_id,
            payload=payload,
            values={ORDER_FIELD: digest},
        )


def scan_sql(store: Store, local: Local) -> int:
    """Queue the changes of a SQL source's tables. Returns the records queued."""
    queued = 0
    for section, table in ((CUSTOMERS, local.customers), (ORDERS, local.orders)):
        if table is None:
            continue
        mark_key = f"watermark:{local.name}:{section}"
        mark = decode_mark(store.get(mark_key))
        for page in table.scan(mark):
            with store.tx():  # a page's records and the watermark past them: one transaction
                for row in page:
                    if section == CUSTOMERS:
                        assert local.config.customers is not None
                        seq = queue_customer(store, local, row.key, customer_values(local.config.customers, row.values))
                    else:
                        seq = queue_order(store, local, row.key, row.values, row.updated_at)
                    queued += seq is not None
                store.put(mark_key, encode_mark(page[-1].updated_at))
    return queued


def _move_done(folder: Path, file: Path, digest: str) -> None:
    done = folder / "done"
    done.mkdir(exist_ok=True)
    target = done / file.name
    if target.exists():
        target = done / f"{file.stem}.{digest[:12]}{file.suffix}"
    os.replace(file, target)


def scan_csv(store: Store, local: Local) -> int:
    """Enqueue each new ``*.csv`` of the drop folder exactly once: its records and its
    "done" marker (the content's hash) in one transaction, then the file moves to
    ``done/``. Files named ``orders*.csv`` hold orders, others customers. A row that
    cannot be read is parked locally with its line number; the others go on."""
    assert local.config.folder
    folder = Path(local.config.folder)
    queued = 0
    for file in sorted(folder.glob("*.csv")):
        data = file.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if store.file_done(digest):  # enqueued before a crash; only the move is left
            _move_done(folder, file, digest)
            continue
        is_orders = file.name.lower().startswith("orders")
        section_map: Customers | Orders | None = local.config.orders if is_orders else local.config.customers
        with store.tx():
            if section_map is None:
                store.park_local(
                    kind="order" if is_orders else "customer",
                    source=local.name,
                    tbl=ORDERS if is_orders else CUSTOMERS,
                    row_key=file.name,
                    external_id="",
                    reason=f"{file.name}: no {'orders' if is_orders else 'customers'} mapping",
                )
            else:
                queued += _csv_rows(store, local, file.name, data, section_map, is_orders)
            store.mark_file(digest, file.name)
        crash.point("after_file_enqueued")
        _move_done(folder, file, digest)
    return queued


def _csv_rows(store: Store, local: Local, name: str, data: bytes, section: Customers | Orders, is_orders: bool) -> int:
    queued = 0
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        store.park_local(
            kind="order" if is_orders else "customer",
            source=local.name,
            tbl=ORDERS if is_orders else CUSTOMERS,
            row_key=name,
            external_id="",
            reason=f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})",
        )
        return 0
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        key = (row.get(section.key) or "").strip()
        kind = "order" if is_orders else "customer"
        if not key:
            store.park_local(
                kind=kind,
                source=local.name,
                tbl=ORDERS if is_orders else CUSTOMERS,
                row_key=f"{name}:{line}",
                external_id="",
                reason=f"{name} line {line}: no value in the key column {section.key!r}",
            )
            continue
        if None in row:  # more cells than headers
            store.park_local(
                kind=kind,
                source=local.name,
                tbl=ORDERS if is_orders else CUSTOMERS,
                row_key=key,
                external_id=local.external_id(key),
                reason=f"{name} line {line}: more cells than the header has columns",
            )
            continue
        if is_orders:
            updated = row.get(section.updated_at) if section.updated_at else None
            seq = queue_order(store, local, key, row, updated)
        else:
            assert isinstance(section, Customers)
            seq = queue_customer(store, local, key, customer_values(section, row))
        queued += seq is not None
    return queued


def scan_all(store: Store, locals_: list[Local]) -> int:
    queued = 0
    for local in locals_:
        queued += scan_sql(store, local) if local.config.kind == "sql" else scan_csv(store, local)
    return queued
