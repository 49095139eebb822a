"""The conformance kit: one pytest suite that every connector, a partner's included, passes
against its own fake vendor (docs/connectors.md, "Conformance kit").

A connector's test module subclasses :class:`ConformanceAdapter` (its fake behind nine
small methods) and :class:`ConnectorConformance` (the suite), naming the adapter::

    from connectors.sdk.conformance import ConformanceAdapter, ConnectorConformance

    class AcmeAdapter(ConformanceAdapter):
        connector = Acme
        stream = "customers"
        ...

    class TestAcmeConformance(ConnectorConformance):
        adapter = AcmeAdapter

The suite drives the connector through the SDK objects only (``client``, ``check``,
``Stream.read``, ``verify_webhook``, ``webhook_delivery_id``, ``parse_webhook``), as
``connectors.runner`` and the webhook intake do, so it needs no AWS and no Rapport test
package. Each check gets a fresh adapter (``start`` … ``stop``, in pytest's
``setup_method``/``teardown_method``) and a client whose ``sleep`` only records
(``Harness.sleeps``), so throttles and backoffs cost no time. The module imports nothing
but the SDK and the standard library (it ships with the SDK, in the Lambda package too):
pytest collects the suite as a plain test class, and a check that does not apply raises
``unittest.SkipTest``, which pytest reports as SKIPPED with its reason.

What "read" means below: a record is *read* when a stream yields it in a :class:`Page`.
A record may be *fetched* from the vendor more than once (a window re-reads the lookback
overlap, a resumed window may re-ask a page), but it is read once per (id, updated_at).

The checks (method names; ``CHECKS`` holds one line each):

- ``paging``: more records than four pages, read to the end, each exactly once;
- ``shared_timestamp``: more than two pages of records sharing one update time, with
  page boundaries inside the tie, each read exactly once;
- ``incremental``: the next incremental run after one that ended on a shared timestamp
  reads exactly what changed at the vendor meanwhile (more records at that very time,
  records indexed late inside the lookback, records changed later) and nothing of the
  first run again; a third run with no change reads nothing;
- ``resume``: a run read page by page; resumed from each checkpoint (the state of page
  i, as the runner saved it, same run id), the connector reads exactly the records of
  pages i+1.. : their union with pages 1..i is every record, and nothing of pages 1..i
  is read again. The overlap the window allows is fetching, not reading: a resumed or
  closed window may ask the vendor again for records updated at or after its floor
  (``since``, i.e. cursor − lookback), but skips those its checkpoint's ``seen`` holds
  at the same update time (:mod:`connectors.sdk.window`). Every checkpoint is JSON;
- ``throttling``: a 429 mid-read with ``Retry-After`` within the client's ``max_wait``
  is slept exactly the vendor's seconds and the read completes; a longer one raises
  :class:`RateLimited` carrying the vendor's seconds, and the run resumes from its last
  checkpoint with nothing lost or read twice;
- ``auth``: 401 and 403 make ``check`` raise :class:`CheckFailed` classified ``auth``
  (as ``POST …/check`` reports it: :func:`check_error`) without echoing a secret, and
  make a read raise a :class:`VendorError` of kind ``auth`` (what the runner records as
  the run's error), with no retry;
- ``server_errors``: 500/502/503 mid-read are retried and the read completes; a vendor
  that keeps failing makes the read raise kind ``vendor`` after exactly the client's
  ``retries``, and the run resumes from its last checkpoint;
- ``webhooks``: a signed delivery is accepted (with the lower-cased headers the intake
  passes) and parses to the record; forged (another secret), tampered (another body)
  and unsigned (signature headers removed) ones are rejected; a replay has the same
  delivery id; a delivery of the record changed since has another. Then where the
  records come from, as the connector declares (``Connector.webhook_hints``): a hint's
  come from the vendor read again (a delivery from before a change parses to the
  current version; with the vendor failing it parses to nothing, with a ``note``); a
  delivery that carries its record parses to it even while the vendor cannot be read.

A check that cannot apply is reported as SKIPPED with the reason, never passed in
silence, and only by declaration: ``webhooks`` when the connector declares ``webhooks =
False`` (the kit then checks every delivery is rejected); ``incremental``, ``throttling``,
``auth`` and ``server_errors`` when the adapter names them in ``not_applicable`` with a
reason and the connector is a file connector (``kind = "file"``, no HTTP client).
"""

from __future__ import annotations

import json
import unittest
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, TypeVar

from connectors.sdk.base import Connector, Page, ReadContext, Rejected, Stream
from connectors.sdk.errors import CheckFailed, RateLimited, VendorError, WebhookRejected, check_error
from connectors.sdk.secrets import secret_fields

CHECKS = {
    "paging": "more records than four pages, read to the end, each exactly once",
    "shared_timestamp": "more than two pages of records sharing one update time, each read once",
    "incremental": "the next run reads exactly what changed at the boundary time and after, nothing twice",
    "resume": "resumed from every checkpoint: the union is complete, nothing before it read again",
    "throttling": "429 + Retry-After: slept the vendor's seconds, or paused (RateLimited) and resumed",
    "auth": "401/403: check raises CheckFailed (auth), a read raises kind auth, no retry",
    "server_errors": "5xx retried; a vendor that keeps failing ends the read as kind vendor",
    "webhooks": "signed accepted, forged/tampered/unsigned rejected, a replay keeps its delivery id; "
    "records from the vendor's current state (hints) or the body, as declared",
}
# what an adapter may declare not applicable, with a reason, and only for a file connector
DECLARABLE = ("incremental", "throttling", "auth", "server_errors")
BASE_TIME = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)  # in the past: the windows' cursors follow the data
SPACING = 61  # seconds between distinct seeded times: 20 records span more than the 5-minute lookback
# the headers the webhook intake keeps for the worker that parses (connectors/hooks.py)
PARSE_HEADERS = ("content-type",)
Mode = Literal["backfill", "incremental"]
E = TypeVar("E", bound=BaseException)


def at(seconds: float) -> str:
    """The kit's clock: ``BASE_TIME`` + ``seconds``, ISO-8601 UTC in whole seconds (``Z``)."""
    return (BASE_TIME + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConformanceAdapter:
    """A connector's fake vendor, as the kit drives it. Subclass it in the connector's test
    module: set the class attributes and implement the methods (``update``, the fault
    methods and ``webhook`` may stay unimplemented when their checks do not apply)."""

    connector: ClassVar[type[Connector]]  # the connector class under test
    stream: ClassVar[str]  # the name of the stream the kit reads (one of connector.streams)
    page_size: ClassVar[int] = 5  # records a page: the fake must serve at most this many
    not_applicable: ClassVar[dict[str, str]] = {}  # check (one of DECLARABLE) -> why, printed

    def start(self) -> None:
        """Start the fake vendor, empty, serving at most ``page_size`` records a page."""

    def stop(self) -> None:
        """Stop it (called even when the check failed)."""

    def config(self) -> Any:
        """A valid config pointing at the fake: an instance of ``connector.Config``."""
        raise NotImplementedError

    def seed(self, updated_at: Sequence[str]) -> list[str]:
        """Create one record of ``stream`` per time (ISO-8601 UTC, whole seconds; many may
        be equal), in the vendor's paging order; return their external ids as the
        connector reports them (``record.external_id``)."""
        raise NotImplementedError

    def update(self, external_id: str, updated_at: str) -> None:
        """Change the record vendor-side so that its update time becomes ``updated_at``."""
        raise NotImplementedError

    def fail_next(self, count: int, status: int, headers: dict[str, str] | None = None) -> None:
        """The next ``count`` requests to the fake answer ``status`` with ``headers`` (429
        with ``Retry-After``, 401, 403, 500, 502, 503), whatever they ask."""
        raise NotImplementedError

    def clear_faults(self) -> None:
        """End the faults ``fail_next`` injected: the fake answers normally again."""
        raise NotImplementedError

    def webhook(self, external_id: str, *, forged: bool = False) -> tuple[dict[str, str], bytes]:
        """(headers, raw body) of a delivery of the record as it is now, signed like the
        vendor signs with the config's webhook secret, or with another secret when
        ``forged``. Each call is a new delivery (a new delivery id if the vendor sends one)."""
        raise NotImplementedError

    def read_context(self, config: Any, client: Any, mode: Mode, run_id: str) -> ReadContext:
        """What ``Stream.read`` gets; a file connector adds its upload (``upload_id``)."""
        return ReadContext(
            config=config,
            client=client,
            mode=mode,
            tenant_id="t_conformance",
            connection_id="con_conformance",
            run_id=run_id,
        )


@dataclass
class Read:
    """The pages a read yielded, and what stopped it (None: it reached the end)."""

    pages: list[Page] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def records(self) -> list[Any]:
        return [r for p in self.pages for r in p.records]

    @property
    def ids(self) -> list[str]:
        return [r.external_id for r in self.records]

    def state(self, before: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint to resume from: the last page's state, else the one read from."""
        return self.pages[-1].state if self.pages else before


class Harness:
    """One adapter, its connector and config, and reads as the runner does them."""

    def __init__(self, adapter: ConformanceAdapter) -> None:
        self.adapter = adapter
        self.cls = type(adapter).connector
        self.connector = self.cls()
        self.config = adapter.config()
        stream = self.cls.stream(type(adapter).stream)
        assert stream is not None, f"{self.cls.name} has no stream {type(adapter).stream!r}"
        self.stream: type[Stream] = stream
        self.page_size = type(adapter).page_size
        self.sleeps: list[float] = []  # every wait the SDK client asked for, in seconds
        unknown = sorted(set(type(adapter).not_applicable) - set(DECLARABLE))
        assert not unknown, f"not_applicable names checks that apply to every connector: {unknown}"

    def client(self) -> Any:
        """The connector's client (None for a file connector), sleeping into ``sleeps``."""
        client = self.connector.client(self.config)
        if client is not None:
            client.sleep = self.sleeps.append
        return client

    def read(
        self,
        state: dict[str, Any],
        *,
        mode: Mode = "incremental",
        run_id: str = "run-1",
        after_page: dict[int, Callable[[], None]] | None = None,
    ) -> Read:
        """Read the stream to its end from ``state``, page by page; ``after_page[i]`` runs
        once page i is read (inject a fault mid-read). A VendorError or RateLimited ends
        the read and is kept in ``error``; anything else is a failure of the check."""
        client = self.client()
        out = Read()
        try:
            rc = self.adapter.read_context(self.config, client, mode, run_id)
            for i, page in enumerate(self.stream().read(rc, json.loads(json.dumps(state)))):
                assert json.loads(json.dumps(page.state)) == page.state, f"page {i}'s checkpoint is not JSON"
                rejected = [r for r in page.records if isinstance(r, Rejected)]
                assert not rejected, f"the fake's records were rejected: {[r.reason for r in rejected][:3]}"
                out.pages.append(page)
                if after_page and i in after_page:
                    after_page[i]()
        except (VendorError, RateLimited) as exc:
            out.error = exc
        finally:
            if client is not None:
                client.close()
        return out

    def seed_spaced(self, count: int, start: float = 0.0) -> list[str]:
        """``count`` records at distinct times ``SPACING`` seconds apart from ``at(start)``."""
        return self.adapter.seed([at(start + i * SPACING) for i in range(count)])

    def check(self) -> None:
        """``Connector.check`` with a fresh client, as ``POST …/check`` runs it."""
        client = self.client()
        try:
            self.connector.check(self.config, client)
        finally:
            if client is not None:
                client.close()

    def retries(self) -> tuple[int, float]:
        """The client's (retries, max_wait), as the connector configures it."""
        client = self.connector.client(self.config)
        try:
            return client.retries, client.max_wait
        finally:
            client.close()


def read_once(read: Read, expected: Sequence[str], what: str) -> None:
    """``read`` ended normally and read exactly ``expected``, each once."""
    assert read.error is None, f"{what}: the read failed: {read.error!r}"
    ids = read.ids
    twice = sorted({i for i in ids if ids.count(i) > 1})
    assert not twice, f"{what}: read more than once: {twice[:10]}"
    missing = sorted(set(expected) - set(ids))
    assert not missing, f"{what}: never read: {missing[:10]} ({len(missing)} of {len(expected)})"
    extra = sorted(set(ids) - set(expected))
    assert not extra, f"{what}: read although unchanged or unknown: {extra[:10]}"


def raises(expected: type[E], call: Callable[[], Any], what: str) -> E:
    """The ``expected`` exception ``call()`` raises (an AssertionError naming ``what`` if none)."""
    try:
        call()
    except expected as exc:
        return exc
    raise AssertionError(f"{what}: {expected.__name__} was not raised")


def not_applicable(kit: Harness, check: str) -> str | None:
    """The declared reason ``check`` does not apply to this connector, after verifying the
    declaration holds; None when the check applies."""
    if check == "webhooks":
        if kit.cls.webhooks:
            assert check not in type(kit.adapter).not_applicable, (
                f"{kit.cls.name} declares webhooks = True: the webhook check cannot be declared not applicable"
            )
            return None
        raises(
            WebhookRejected,
            lambda: kit.connector.verify_webhook(kit.config, {}, b"{}"),
            f"{kit.cls.name} declares webhooks = False but accepted a delivery",
        )
        return f"{kit.cls.name} declares webhooks = False (and rejects every delivery)"
    why = type(kit.adapter).not_applicable.get(check)
    if why is None:
        return None
    assert kit.cls.kind == "file" and kit.connector.client(kit.config) is None, (
        f"{check} may be declared not applicable only by a file connector (no vendor API); "
        f"{kit.cls.name} is {kit.cls.kind!r}"
    )
    return why


def skip_unless_applicable(kit: Harness, check: str) -> None:
    why = not_applicable(kit, check)
    if why is not None:
        raise unittest.SkipTest(f"conformance: {check} not applicable to {kit.cls.name}: {why}")


class ConnectorConformance:
    """The suite. Subclass it as ``Test<Name>Conformance`` with ``adapter`` set; pytest
    collects the checks below as that class's tests."""

    adapter: ClassVar[type[ConformanceAdapter]]
    kit: Harness

    def setup_method(self, method: Any) -> None:
        adapter = self.adapter()
        adapter.start()
        try:
            self.kit = Harness(adapter)
        except BaseException:
            adapter.stop()
            raise

    def teardown_method(self, method: Any) -> None:
        self.kit.adapter.stop()

    def test_paging(self) -> None:
        """More records than four pages are read to the end, each exactly once."""
        kit = self.kit
        ids = kit.seed_spaced(kit.page_size * 4 + 3)
        read = kit.read({}, mode="backfill")
        read_once(read, ids, "a backfill")
        assert sum(1 for p in read.pages if p.records) >= 5, (
            f"{len(ids)} records came in fewer than 5 pages: the fake must serve at most "
            f"page_size ({kit.page_size}) records a page"
        )

    def test_shared_timestamp(self) -> None:
        """More than two pages of records share one update time (page boundaries inside the
        tie), after some older ones: each is read exactly once."""
        kit = self.kit
        tie = at(3600)
        ids = kit.seed_spaced(3) + kit.adapter.seed([tie] * (kit.page_size * 2 + 3))
        read_once(kit.read({}), ids, "a first incremental run")

    def test_incremental(self) -> None:
        """The next run after one ending on a shared time reads exactly what changed."""
        kit = self.kit
        skip_unless_applicable(kit, "incremental")
        tie = at(3600)
        old = kit.seed_spaced(kit.page_size + 2)
        tied = kit.adapter.seed([tie] * (kit.page_size * 2 + 1))
        first = kit.read({}, run_id="run-1")
        read_once(first, old + tied, "the first run")
        # meanwhile at the vendor: more records at the very time the first run ended on and
        # inside the lookback (indexed late), and two records changed later
        late_tied = kit.adapter.seed([tie] * (kit.page_size + 1))
        late = kit.adapter.seed([at(3600 - 60)] * 2)
        kit.adapter.update(old[0], at(3601))
        kit.adapter.update(tied[0], at(3602))
        second = kit.read(first.state({}), run_id="run-2")
        read_once(second, late_tied + late + [old[0], tied[0]], "the next run")
        third = kit.read(second.state(first.state({})), run_id="run-3")
        read_once(third, [], "a run with nothing changed")

    def test_resume(self) -> None:
        """Resumed from each checkpoint, the rest is read: complete, nothing twice."""
        kit = self.kit
        # distinct times, then a tie across a page boundary, then later ones
        ids = (
            kit.seed_spaced(kit.page_size * 2 + 1)
            + kit.adapter.seed([at(7200)] * (kit.page_size + 2))
            + kit.seed_spaced(kit.page_size, start=7300)
        )
        whole = kit.read({}, run_id="run-1")
        read_once(whole, ids, "the whole run")
        assert len(whole.pages) >= 4, f"{len(ids)} records in fewer than 4 pages: cap the fake's page size"
        for i, page in enumerate(whole.pages):
            before = [r.external_id for p in whole.pages[: i + 1] for r in p.records]
            rest = kit.read(page.state, run_id="run-1")  # the same run, taken up again
            read_once(rest, sorted(set(ids) - set(before)), f"resumed after page {i + 1} of {len(whole.pages)}")

    def test_throttling(self) -> None:
        """429 + Retry-After: slept exactly when affordable, else a resumable pause."""
        kit = self.kit
        skip_unless_applicable(kit, "throttling")
        _, max_wait = kit.retries()
        short, long = min(3.0, float(int(max_wait))), float(max(120, int(max_wait) + 60))
        ids = kit.seed_spaced(kit.page_size * 2 + 2)
        throttle = {0: lambda: kit.adapter.fail_next(1, 429, {"Retry-After": str(int(short))})}
        read_once(kit.read({}, after_page=throttle), ids, "a read throttled once")
        assert kit.sleeps == [short], f"expected one wait of the vendor's {short} s, waited {kit.sleeps}"
        kit.sleeps.clear()
        throttle = {0: lambda: kit.adapter.fail_next(1, 429, {"Retry-After": str(int(long))})}
        paused = kit.read({}, run_id="run-2", after_page=throttle)
        assert isinstance(paused.error, RateLimited), f"a {long} s Retry-After must pause the run: {paused.error!r}"
        assert paused.error.retry_after == long, f"paused for {paused.error.retry_after} s, the vendor said {long}"
        assert kit.sleeps == [], f"a pause must not sleep in the run: slept {kit.sleeps}"
        rest = kit.read(paused.state({}), run_id="run-2")
        read_once(Read(paused.pages + rest.pages), ids, "a paused run resumed")

    def test_auth(self) -> None:
        """Credentials refused (401, 403): check fails ``auth``, a read fails ``auth``."""
        kit = self.kit
        skip_unless_applicable(kit, "auth")
        kit.seed_spaced(3)
        kit.check()  # the valid config passes
        secrets = [
            str(getattr(kit.config, name))
            for name in secret_fields(type(kit.config))
            if getattr(kit.config, name, None)
        ]
        for status in (401, 403):
            kit.adapter.fail_next(50, status)
            refused = raises(CheckFailed, lambda: kit.check(), f"check with every request refused {status}")
            cause = check_error(refused)
            assert (cause.kind, cause.status) == ("auth", status), (
                f"check after {status}: classified {cause.kind!r} (status {cause.status})"
            )
            assert not any(s in str(refused) for s in secrets), "the check's message echoes a secret"
            read = kit.read({})
            assert isinstance(read.error, VendorError), f"a read refused {status} must fail: {read.error!r}"
            assert read.error.kind == "auth", f"a read refused {status} is classified {read.error.kind!r}"
            assert not read.records, "records read although the credentials were refused"
            assert kit.sleeps == [], f"a refusal is not retried: waited {kit.sleeps}"
            kit.adapter.clear_faults()

    def test_server_errors(self) -> None:
        """5xx are retried (nothing lost); a vendor that keeps failing ends the read ``vendor``."""
        kit = self.kit
        skip_unless_applicable(kit, "server_errors")
        retries, _ = kit.retries()
        ids = kit.seed_spaced(kit.page_size * 2 + 2)

        def flaky() -> None:
            for status in (500, 502, 503)[: max(retries, 1)]:
                kit.adapter.fail_next(1, status)

        read_once(kit.read({}, after_page={0: flaky}), ids, "a read with server errors")
        assert len(kit.sleeps) == min(3, retries), f"each 5xx retried after a backoff: waited {kit.sleeps}"
        kit.sleeps.clear()
        failing = kit.read({}, run_id="run-2", after_page={0: lambda: kit.adapter.fail_next(1000, 500)})
        assert isinstance(failing.error, VendorError), (
            f"a vendor failing every time must end the read: {failing.error!r}"
        )
        assert (failing.error.kind, failing.error.status) == ("vendor", 500), (
            f"classified {failing.error.kind!r} (status {failing.error.status}), not vendor"
        )
        assert len(kit.sleeps) == retries, f"expected {retries} retries, waited {len(kit.sleeps)} times"
        kit.adapter.clear_faults()
        rest = kit.read(failing.state({}), run_id="run-2")
        read_once(Read(failing.pages + rest.pages), ids, "a failed run resumed")

    def test_webhooks(self) -> None:
        """Signed accepted and parsed; forged, tampered, unsigned rejected; replays recognised."""
        kit = self.kit
        skip_unless_applicable(kit, "webhooks")
        conn, config = kit.connector, kit.config
        [xid] = kit.adapter.seed([at(0)])
        headers, body = kit.adapter.webhook(xid)
        lowered = {k.lower(): v for k, v in headers.items()}  # as the intake passes them
        conn.verify_webhook(config, lowered, body)
        conn.verify_webhook(config, headers, body)
        delivery_id = conn.webhook_delivery_id(lowered, body)
        assert delivery_id, "a delivery needs an id (the intake de-duplicates on it)"
        kept = {k: v for k, v in lowered.items() if k.startswith("x-") or k in PARSE_HEADERS}
        delivery = conn.parse_webhook(config, kept, body)
        assert [r.external_id for r in delivery.records] == [xid], f"parsed {delivery.records!r}"
        assert not any(isinstance(r, Rejected) for r in delivery.records), f"rejected: {delivery.records!r}"

        forged_headers, forged_body = kit.adapter.webhook(xid, forged=True)
        forged = {k.lower(): v for k, v in forged_headers.items()}
        raises(WebhookRejected, lambda: conn.verify_webhook(config, forged, forged_body), "a forged delivery")
        raises(WebhookRejected, lambda: conn.verify_webhook(config, lowered, body + b" "), "a tampered body")
        signature = {k.lower() for k, v in headers.items() if forged_headers.get(k) != v}
        assert signature, "the forged delivery carries the same headers as the signed one"
        unsigned = {k: v for k, v in lowered.items() if k not in signature}
        raises(WebhookRejected, lambda: conn.verify_webhook(config, unsigned, body), "an unsigned delivery")

        replay = conn.webhook_delivery_id(dict(lowered), bytes(body))
        assert replay == delivery_id, "a replayed delivery must keep its delivery id"
        kit.adapter.update(xid, at(60))
        changed_headers, changed_body = kit.adapter.webhook(xid)
        changed_lowered = {k.lower(): v for k, v in changed_headers.items()}
        changed = conn.webhook_delivery_id(changed_lowered, changed_body)
        assert changed != delivery_id, "a delivery of the changed record must not pass for a replay"

        # where a delivery's records come from: the vendor read again (a hint), or the body
        changed_kept = {k: v for k, v in changed_lowered.items() if k.startswith("x-") or k in PARSE_HEADERS}
        current = conn.parse_webhook(config, changed_kept, changed_body).records
        kit.adapter.fail_next(50, 503)  # the vendor cannot be read now
        try:
            down = conn.parse_webhook(config, kept, body)
        finally:
            kit.adapter.clear_faults()
        if kit.cls.webhook_hints:
            stale = conn.parse_webhook(config, kept, body).records  # the delivery from before the change
            assert [getattr(r, "updated_at", None) for r in stale] == [
                getattr(r, "updated_at", None) for r in current
            ], "a hint's records come from the vendor's current state, never from the (older) delivery"
            assert down.records == [] and down.note, (
                f"a hint the vendor cannot confirm must write nothing and say why: {down.records!r}, {down.note!r}"
            )
        else:
            assert [r.external_id for r in down.records] == [xid], (
                f"{kit.cls.name} declares webhook_hints = False: a delivery carries its record and parses "
                f"to it while the vendor cannot be read, but parsed {down.records!r} (note {down.note!r})"
            )
