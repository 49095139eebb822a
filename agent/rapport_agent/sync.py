"""One sync cycle and the loop around it.

A cycle: local write-backs left by a crash are applied; local changes are scanned into
the outbox; the outbox is uploaded (oldest first, batches of at most 100); Rapport's
customer changes are read from the change feed and written locally; a heartbeat reports
the agent's figures. Every step is durable before the next (crash.py names the points).

Uploads are never head-of-line blocked: a record the API rejects is parked with its
reason and the rest go on; a batch answered 422 or 500 (after the client's retries) is
split in halves down to the single record, and that record alone is parked. While the
API cannot be reached nothing is parked: the records wait, in order, and the scan goes
on filling the outbox.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common import clock
from rapport_agent import __version__, crash, mapping, plan
from rapport_agent.client import AccessDenied, ApiError, Client, Gone, ServerError, Unauthorized, Unprocessable
from rapport_agent.config import Config, ConfigError
from rapport_agent.outbox import Record, Store
from rapport_agent.scan import CUSTOMERS, ORDER_FIELD, ORDERS, Local, customer_values, open_sources, scan_all

log = logging.getLogger("rapport_agent.sync")

CHANGES_PAGE = 100
MAX_PAGES = 50  # change-feed pages per cycle; the next cycle reads on
INSERTING = "inserting"  # kv: cloud customers being inserted locally (crash recovery)


@dataclass
class CycleReport:
    scanned: int = 0
    sent: int = 0
    parked: int = 0
    applied: int = 0  # local rows written from the cloud
    inserted: int = 0
    offline: bool = False


class Agent:
    def __init__(self, config: Config, store: Store, client: Client, locals_: list[Local] | None = None):
        self.config = config
        self.store = store
        self.client = client
        self.client.on_hlc = store.observe
        self.locals = open_sources(config) if locals_ is None else locals_
        self.by_name = {local.name: local for local in self.locals}
        self.agent_id: str = store.get("agent_id") or ""
        self.identified = False

    # --- identity ------------------------------------------------------------------------

    def identify(self) -> dict[str, Any]:
        """``GET /v1/agents/me``: the agent id and source, checked against the config and
        against the state file (a state file belongs to one agent)."""
        me = self.client.me()
        agent_id, source = me["id"], me.get("source")
        wanted = self.config.agent.source
        if wanted is not None and source != wanted:
            raise ConfigError(
                f"agent.source is {wanted!r} but the agent's key belongs to agent {agent_id} whose source is "
                f"{source!r}: fix agent.source or use that agent's key"
            )
        known = self.store.get("agent_id")
        if known and known != agent_id:
            raise ConfigError(
                f"the state file {self.store.path} belongs to agent {known}, the key to agent {agent_id}: "
                "use that agent's key or a new state file"
            )
        self.store.put("agent_id", agent_id)
        self.store.put("source", source)
        self.agent_id = agent_id
        self.identified = True
        return me

    # --- write-backs ---------------------------------------------------------------------

    def apply_writebacks(self) -> None:
        """Local writes decided by stored upload results: the cloud's value of a field it
        won, written when the local value is still the one that was sent."""
        pending = self.store.writebacks()
        if not pending:
            return
        by_row: dict[tuple[str, str], list[Any]] = {}
        for wb in pending:
            by_row.setdefault((wb.source, wb.row_key), []).append(wb)
        for (source, key), items in by_row.items():
            local = self.by_name.get(source)
            if local is None or local.customers is None or local.config.customers is None:
                continue
            row = local.customers.get(key)
            if row is None:
                continue
            fields = local.config.customers.fields
            now = customer_values(local.config.customers, row.values)
            writes = {
                fields[wb.field]: mapping.local_value(wb.field, wb.value, row.values.get(fields[wb.field]))
                for wb in items
                if wb.field in fields and now.get(wb.field) == wb.expected
            }
            if writes:
                local.customers.update(key, writes, row.updated_at)
        crash.point("after_writeback")
        self.store.drop_writebacks([wb.id for wb in pending])

    # --- up ------------------------------------------------------------------------------

    def scan(self) -> int:
        queued = scan_all(self.store, self.locals)
        crash.point("after_scan_enqueue")
        return queued

    def upload(self, report: CycleReport) -> None:
        """Send every queued record, oldest first. Raises Offline when the API cannot be
        reached (the records wait), Unauthorized/AccessDenied to stop."""
        size = self.config.agent.batch_size
        after = 0
        while True:
            batch = self.store.queued(size, after)
            if not batch:
                return
            self._send(batch, report)
            after = batch[-1].seq

    def _send(self, batch: list[Record], report: CycleReport) -> None:
        try:
            answer = self.client.upload(self.agent_id, [r.wire() for r in batch])
        except (Unprocessable, ServerError) as exc:
            self.store.attempt([r.seq for r in batch])
            if len(batch) == 1:
                log.warning("record %d parked: %s", batch[0].seq, exc)
                self.store.park(batch[0].seq, str(exc), exc.body)
                report.parked += 1
                return
            half = len(batch) // 2
            self._send(batch[:half], report)
            self._send(batch[half:], report)
            return
        crash.point("after_upload_sent")
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            raise ApiError(f"the upload answer has {len(results or [])} results for {len(batch)} records")
        self._store_results(batch, results, report)
        crash.point("after_results_stored")
        self.apply_writebacks()

    def _store_results(self, batch: list[Record], results: list[dict[str, Any]], report: CycleReport) -> None:
        with self.store.tx():
            for record, result in zip(batch, results, strict=True):
                report.sent += 1
                status = result.get("status")
                if status == "rejected":
                    reason = result.get("reason") or "rejected"
                    self.store.park(record.seq, f"rejected by the API: {reason}", result.get("errors"))
                    report.parked += 1
                    continue
                if record.kind == "customer":
                    if customer_id := result.get("customer_id"):
                        self.store.link(customer_id, record.source, record.row_key)
                    refs = self.store.refs(record.source, CUSTOMERS, record.row_key)
                    decided = plan.customer_result(record.seq, record.payload, result, refs)
                    for update in decided.refs:
                        self.store.set_ref(record.source, CUSTOMERS, record.row_key, update.path, update.ref)
                    for path, (sent, cloud) in decided.writebacks.items():
                        self.store.add_writeback(record.source, record.row_key, path, sent, cloud)
                else:
                    ref = self.store.refs(record.source, ORDERS, record.row_key).get(ORDER_FIELD, mapping.Ref())
                    digest = mapping.digest({k: v for k, v in record.payload["order"].items() if k != "updated_at"})
                    pending = None if ref.pending == record.seq else ref.pending
                    self.store.set_ref(
                        record.source, ORDERS, record.row_key, ORDER_FIELD, mapping.Ref(digest, ref.ref, pending)
                    )
                self.store.ack(record.seq, str(status))
            self.store.put("last_upload_at", clock.now_iso())

    # --- down ----------------------------------------------------------------------------

    def _insert_source(self) -> Local | None:
        for local in self.locals:
            if local.customers is not None and local.config.customers and local.config.customers.insert:
                return local
        return None

    def _row_of(self, fetched: dict[str, Any]) -> tuple[Local, str] | None:
        """The local row a cloud customer is linked to, if any."""
        external = fetched.get("external_id")
        if external:
            candidates = sorted(
                (lo for lo in self.locals if lo.customers is not None and external.startswith(lo.config.prefix)),
                key=lambda lo: -len(lo.config.prefix),
            )
            if candidates:
                return candidates[0], external[len(candidates[0].config.prefix) :]
        linked = self.store.linked_row(fetched["customer_id"])
        if linked and linked[0] in self.by_name and self.by_name[linked[0]].customers is not None:
            return self.by_name[linked[0]], linked[1]
        return None

    def download(self, report: CycleReport) -> None:
        """Read the change feed from the stored cursor and write Rapport's customer changes
        locally. The first run starts at the feed's current end (``cursor=now``): customers
        that changed before it come down when they change again."""
        cursor = self.store.get("cursor")
        if cursor is None:
            answer = self.client.changes("now", CHANGES_PAGE)
            self.store.put("cursor", answer["next_cursor"])
            return
        for _ in range(MAX_PAGES):
            try:
                answer = self.client.changes(cursor, CHANGES_PAGE)
            except Gone as exc:
                oldest = ((exc.body or {}).get("error") or {}).get("oldest_cursor")
                log.error(
                    "the change-feed cursor expired (offline past the retention); reading on from the "
                    "oldest kept change: changes before it were not written locally"
                )
                self.store.put("last_error", "change-feed cursor expired; resumed from the oldest kept change")
                if not oldest:
                    raise
                cursor = oldest
                self.store.put("cursor", cursor)
                continue
            changes = answer.get("data") or []
            for change in changes:
                self.store.observe(change.get("committed_at"))
            crash.point("after_changes_read")
            ids = list(dict.fromkeys(c["customer_id"] for c in changes if c.get("customer_id")))
            self._apply_customers(ids, report)
            cursor = answer["next_cursor"]
            self.store.put("cursor", cursor)
            self.store.put("last_download_at", clock.now_iso())
            crash.point("after_cursor_stored")
            if not answer.get("has_more"):
                return

    def _apply_customers(self, ids: list[str], report: CycleReport) -> None:
        fetched: list[dict[str, Any]] = []
        for i in range(0, len(ids), 100):
            answer = self.client.fetch(self.agent_id, ids[i : i + 100])
            fetched += answer.get("data") or []
        if fetched:
            crash.point("after_fetch")
        base_updates: list[tuple[str, str, dict[str, mapping.Ref]]] = []
        links: list[tuple[str, str, str]] = []
        inserts = self._inserting_plans(fetched)
        for customer in fetched:
            self.store.observe(customer.get("updated_at"))
            if customer.get("merged_into") or customer.get("status") in ("erased", "merged", "deleted"):
                continue
            profile = customer.get("profile") or {}
            found = self._row_of(customer)
            if found is None:
                if customer["customer_id"] in inserts:
                    local, key, refs = self._insert(customer["customer_id"], profile, inserts)
                    if key is not None:
                        base_updates.append((local.name, key, refs))
                        links.append((customer["customer_id"], local.name, key))
                        report.inserted += 1
                continue
            local, key = found
            assert local.customers is not None and local.config.customers is not None
            row = local.customers.get(key)
            if row is None:
                continue  # deleted locally
            section = local.config.customers
            rules = {path: section.rule(path) for path in section.fields}
            decided = plan.customer_down(
                profile, customer_values(section, row.values), self.store.refs(local.name, CUSTOMERS, key), rules
            )
            if decided.writes:
                local.customers.update(
                    key,
                    {
                        section.fields[p]: mapping.local_value(p, v, row.values.get(section.fields[p]))
                        for p, v in decided.writes.items()
                    },
                    row.updated_at,
                )
                report.applied += 1
            if decided.refs:
                base_updates.append((local.name, key, decided.refs))
        if fetched:
            crash.point("after_local_write")
        with self.store.tx():
            for source, key, refs in base_updates:
                for path, ref in refs.items():
                    self.store.set_ref(source, CUSTOMERS, key, path, ref)
            for customer_id, source, key in links:
                self._link_inserted(customer_id, source, key)
            self.store.put(INSERTING, None)

    def _link_inserted(self, customer_id: str, source: str, key: str) -> None:
        """Record a local row inserted for a cloud customer and queue the record that
        attaches its external id to that customer (no fields: nothing to change)."""
        local = self.by_name[source]
        with self.store.tx():
            self.store.link(customer_id, source, key)
            stamp = self.store.tick()
            self.store.enqueue(
                kind="customer",
                source=source,
                tbl=CUSTOMERS,
                row_key=key,
                external_id=local.external_id(key),
                values={},
                payload={
                    "kind": "customer",
                    "external_id": local.external_id(key),
                    "hlc": stamp,
                    "customer_id": customer_id,
                    "fields": {},
                },
            )

    def recover_inserts(self) -> None:
        """After a crash between inserting local rows for cloud customers and recording
        them: find each planned row, link it and set its bases before any scan (else the
        scan would upload it as a new customer)."""
        plans: dict[str, dict[str, Any]] = self.store.get(INSERTING) or {}
        local = self._insert_source()
        if not plans or local is None:
            return
        assert local.customers is not None and local.config.customers is not None
        section = local.config.customers
        left = {}
        for customer_id, writes in plans.items():
            if self.store.linked_row(customer_id) is not None:
                continue
            columns = {section.fields[p]: mapping.local_value(p, v, None) for p, v in writes.items()}
            key = local.customers.find(columns)
            if key is None:
                left[customer_id] = writes  # not inserted: the download does it again
                continue
            with self.store.tx():
                for path in section.fields:
                    value = writes.get(path)
                    self.store.set_ref(local.name, CUSTOMERS, key, path, mapping.Ref(value, value, None))
                self._link_inserted(customer_id, local.name, key)
        self.store.put(INSERTING, left or None)

    def _inserting_plans(self, fetched: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The local rows to insert for cloud customers no row is linked to, stored before
        any is inserted: after a crash the same rows are found again, not inserted twice."""
        local = self._insert_source()
        if local is None:
            return {}
        assert local.config.customers is not None
        plans: dict[str, dict[str, Any]] = dict(self.store.get(INSERTING) or {})
        paths = list(local.config.customers.fields)
        fresh = False
        for customer in fetched:
            cid = customer["customer_id"]
            if cid in plans or customer.get("merged_into") or customer.get("status") in ("erased", "merged"):
                continue
            if self._row_of(customer) is None:
                decided = plan.customer_insert(customer.get("profile") or {}, paths)
                if decided.writes:
                    plans[cid] = decided.writes
                    fresh = True
        if fresh:
            self.store.put(INSERTING, plans)
        return plans

    def _insert(
        self, customer_id: str, profile: dict[str, Any], plans: dict[str, dict[str, Any]]
    ) -> tuple[Local, str | None, dict[str, mapping.Ref]]:
        local = self._insert_source()
        assert local is not None and local.customers is not None and local.config.customers is not None
        section = local.config.customers
        writes = plans[customer_id]
        columns = {section.fields[p]: mapping.local_value(p, v, None) for p, v in writes.items()}
        key = local.customers.find(columns)
        if key is None:
            own_key = None if local.customers.key_is_generated() else customer_id
            key = local.customers.insert(columns, own_key)
        refs = {p: mapping.Ref(v, v, None) for p, v in plan.customer_insert(profile, list(section.fields)).refs.items()}
        return local, key, refs

    # --- heartbeat -----------------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        counts = self.store.counts()
        oldest = self.store.oldest_queued_at()
        lag = max(0.0, (clock.now() - datetime.fromisoformat(oldest)).total_seconds()) if oldest else 0.0
        return {
            "version": __version__,
            "queued": counts["queued"],
            "parked": counts["parked"],
            "lag_seconds": round(lag, 3),
            "last_sync_at": self.store.get("last_sync_at"),
            "last_error": str(self.store.get("last_error"))[:500] if self.store.get("last_error") else None,
        }

    def heartbeat(self) -> None:
        self.client.heartbeat(self.agent_id, {**self.figures(), "hlc": str(self.store.hlc())})

    # --- the cycle -----------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        """One full cycle, up then down. Raises Offline when the API cannot be reached (the
        local scan has still run), Unauthorized/AccessDenied/ConfigError to stop."""
        report = CycleReport()
        self.apply_writebacks()
        self.recover_inserts()
        report.scanned = self.scan()
        if not self.identified:
            self.identify()
        self.upload(report)
        self.download(report)
        self.store.put("last_sync_at", clock.now_iso())
        self.store.put("last_error", None)
        self.heartbeat()
        self.store.prune()
        return report


def run(agent: Agent, *, once: bool, sleep: Callable[[float], None] = time.sleep) -> int:
    """Cycles until stopped. ``once``: one cycle, exit status 0, or 1 when it could not
    finish (offline). Unauthorized and config errors propagate (the CLI exits with them)."""
    failures = 0
    poll = agent.config.agent.poll_seconds
    while True:
        try:
            report = agent.cycle()
        except ApiError as exc:
            if isinstance(exc, (Unauthorized, AccessDenied)):
                raise
            agent.store.put("last_error", str(exc)[:500])
            log.warning("offline: %s", exc)
            if once:
                return 1
            failures += 1
            delay = min(agent.config.agent.offline_max_seconds, poll * 2 ** min(failures - 1, 10))
            # keep reading local changes into the outbox while the API is away
            deadline = time.monotonic() + random.uniform(delay / 2, delay)
            while (left := deadline - time.monotonic()) > 0:
                sleep(min(left, poll))
                try:
                    agent.apply_writebacks()
                    agent.recover_inserts()
                    agent.scan()
                except Exception as scan_error:  # noqa: BLE001 - the local side may be down too; keep waiting
                    log.warning("local scan failed: %s", scan_error)
            continue
        failures = 0
        log.info("cycle: %s", report)
        if once:
            return 0
        sleep(poll)
