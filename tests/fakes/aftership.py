"""A fake AfterShip Tracking API (version 2026-07, ``/tracking/2026-07/trackings``) and its
webhooks, replaying AfterShip's own tracking payload.

Trackings are rendered from ``aftership/tracking_response.json`` (``data.tracking`` of
``GET /trackings/:slug/:tracking_number`` from AfterShip's Java SDK tests, MIT: a FedEx
parcel with 14 checkpoints in mixed time zones) with id, number, slug, tag, times,
order id and checkpoints varied, and answered in the current envelope
(``{"meta": {"code"}, "data": <tracking>}``, lists as ``data.trackings`` with
``data.pagination``). Webhook bodies follow AfterShip's "Webhook Specifications" (``ts``,
``event`` tracking_update, ``event_id``, ``is_tracking_first_tag``, ``msg`` = the
tracking), signed ``aftership-hmac-sha256: base64(HMAC-SHA256(secret, body))``.

Behaviour: ``as-api-key`` header (else 401 ``{"meta": {"code": 401}}``); ``GET
/trackings`` by ``updated_at_min`` (inclusive), ``tracking_numbers``, ``limit`` (at most
``max_page_size``, 200) and an opaque ``cursor`` (``pagination.next_cursor`` while
``has_next_page``), ordered by (updated_at, id) so a cursor resumes exactly; ``GET
/trackings/:id``; ``POST /trackings`` creates (201) or answers 400 with meta code 4003
for a number it tracks already; numbers in ``refused`` get 400 with code 4005.
Controls: ``seed``, ``add``, ``scan``, ``signed_webhook`` / ``forged_webhook``, and the
faults and request log of :class:`tests.fakes.carriers.FakeCarrier`.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from tests.fakes import Reply, epoch, fixture
from tests.fakes.carriers import FakeCarrier

BASE_TIME = "2025-05-09T20:00:00Z"
PREFIX = "/tracking/2026-07"


def sign(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _stamp(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


class FakeAfterShip(FakeCarrier):
    max_page_size = 200

    def __init__(self, api_key: str = "asat_test_key", base_time: str = BASE_TIME) -> None:
        super().__init__()
        self.api_key = api_key
        self.now = epoch(base_time)
        self.trackings: dict[str, dict[str, Any]] = {}
        self.refused: set[str] = set()
        self._ids = itertools.count(1)
        self._template = fixture("aftership", "tracking_response.json")["data"]["tracking"]

    def tick(self) -> int:
        with self.lock:
            self.now += 1
            return self.now

    def add(self, tracking_number: str, slug: str = "fedex", *, order_id: str | None = None,
            order_number: str | None = None, updated_at: str | None = None, tag: str = "Pending") -> dict[str, Any]:
        with self.lock:
            n = next(self._ids)
            created = self.tick()
            updated = epoch(updated_at) if updated_at else created
            t = copy.deepcopy(self._template)
            t.update(id=f"{n:024x}", tracking_number=tracking_number, slug=slug, tag=tag,
                     subtag=f"{tag}_001", subtag_message=tag, active=True, order_id=order_id,
                     order_number=order_number,
                     created_at=_stamp(created), updated_at=_stamp(updated), last_updated_at=_stamp(updated),
                     return_to_sender=False, shipment_delivery_date=None, checkpoints=[])
            self.trackings[t["id"]] = t
            self.now = max(self.now, created, updated)
            return t

    def seed(self, count: int, *, updated_at: str | Callable[[int], str] | None = None,
             prefix: str = "AS") -> list[dict[str, Any]]:
        out = []
        for i in range(count):
            stamp = updated_at if isinstance(updated_at, str) or updated_at is None else updated_at(i)
            out.append(self.add(f"{prefix}{100000000001 + len(self.trackings)}", updated_at=stamp))
        return out

    def by_number(self, number: str) -> dict[str, Any] | None:
        return next((t for t in self.trackings.values() if t["tracking_number"] == number), None)

    def scan(self, number: str, tag: str, at: str, message: str = "Scanned", location: str | None = "MEMPHIS, TN",
             utc_offset_hours: int = 0, updated_at: str | None = None) -> dict[str, Any]:
        """A checkpoint at ``at`` written in a local time zone (AfterShip keeps the scan's
        offset), the tracking's tag = its latest checkpoint's, a newer updated_at."""
        with self.lock:
            t = self.by_number(number)
            assert t is not None, number
            cp = copy.deepcopy(self._template["checkpoints"][1])
            local = datetime.fromtimestamp(epoch(at), timezone(timedelta(hours=utc_offset_hours)))
            cp.update(tag=tag, subtag=f"{tag}_001", subtag_message=tag, message=message, location=location,
                      checkpoint_time=local.isoformat(), slug=t["slug"],
                      hash=hashlib.sha1(f"{number}|{at}|{tag}|{message}".encode()).hexdigest()[:20])
            t["checkpoints"].append(cp)
            t["checkpoints"].sort(key=lambda c: epoch(c["checkpoint_time"]))
            t["tag"] = t["checkpoints"][-1]["tag"]
            stamp = epoch(updated_at) if updated_at else self.tick()
            t["updated_at"] = t["last_updated_at"] = _stamp(stamp)
            return copy.deepcopy(t)

    # webhooks ---------------------------------------------------------------------------
    def event_body(self, number: str, event_id: str | None = None, tracking: dict | None = None) -> bytes:
        t = copy.deepcopy(tracking or self.by_number(number))
        digest = hashlib.sha1(json.dumps(t, sort_keys=True).encode()).hexdigest()
        return json.dumps({"ts": epoch(t["updated_at"]), "event": "tracking_update",
                           "event_id": event_id or f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}",
                           "is_tracking_first_tag": False, "msg": t}).encode()

    def signed_webhook(self, secret: str, number: str, **kw: Any) -> tuple[dict[str, str], bytes]:
        body = self.event_body(number, **kw)
        return {"aftership-hmac-sha256": sign(secret, body), "Content-Type": "application/json"}, body

    def forged_webhook(self, number: str, **kw: Any) -> tuple[dict[str, str], bytes]:
        return self.signed_webhook("not-the-secret", number, **kw)

    # API --------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any) -> Reply:
        if not hmac.compare_digest(headers.get("as-api-key", ""), self.api_key):
            return Reply(401, {"meta": {"code": 401, "message": "Invalid API key.", "type": "Unauthorized"},
                               "data": {}})
        if not path.startswith(PREFIX + "/trackings"):
            return Reply(404, {"meta": {"code": 404, "message": "not found", "type": "NotFound"}, "data": {}})
        rest = path[len(PREFIX + "/trackings"):].strip("/")
        if not rest and method == "GET":
            return self._list(query)
        if not rest and method == "POST":
            return self._create(body)
        if rest and method == "GET":
            t = self.trackings.get(rest)
            if t is None:
                return Reply(404, {"meta": {"code": 4004, "message": "Tracking does not exist.", "type": "NotFound"},
                                   "data": {}})
            return Reply(200, {"meta": {"code": 200}, "data": copy.deepcopy(t)})
        return Reply(404, {"meta": {"code": 404, "message": "not found", "type": "NotFound"}, "data": {}})

    def _list(self, query: dict[str, str]) -> Reply:
        limit = min(int(query.get("limit", "100")), self.max_page_size)
        with self.lock:
            rows = sorted(self.trackings.values(), key=lambda t: (epoch(t["updated_at"]), t["id"]))
            if "updated_at_min" in query:
                low = epoch(query["updated_at_min"])
                rows = [t for t in rows if epoch(t["updated_at"]) >= low]
            if "tracking_numbers" in query:
                wanted = set(query["tracking_numbers"].split(","))
                rows = [t for t in rows if t["tracking_number"] in wanted]
            if query.get("cursor"):
                after = json.loads(base64.urlsafe_b64decode(query["cursor"]))
                rows = [t for t in rows if (epoch(t["updated_at"]), t["id"]) > (after[0], after[1])]
            page = [copy.deepcopy(t) for t in rows[:limit]]
        more = len(rows) > limit
        cursor = base64.urlsafe_b64encode(json.dumps([epoch(page[-1]["updated_at"]), page[-1]["id"]]).encode()
                                          ).decode() if more and page else None
        return Reply(200, {"meta": {"code": 200}, "data": {
            "pagination": {"total": len(rows), "next_cursor": cursor, "has_next_page": more},
            "trackings": page}})

    def _create(self, body: Any) -> Reply:
        number = body.get("tracking_number") if isinstance(body, dict) else None
        if not number or number in self.refused:
            return Reply(400, {"meta": {"code": 4005, "message": "The value of `tracking_number` is invalid.",
                                        "type": "BadRequest"}, "data": {}})
        if self.by_number(number) is not None:
            return Reply(400, {"meta": {"code": 4003, "message": "Tracking already exists.", "type": "BadRequest"},
                               "data": {"tracking": {"id": self.by_number(number)["id"]}}})
        t = self.add(number, body.get("slug") or "fedex", order_id=body.get("order_id"),
                     order_number=body.get("order_number"))
        return Reply(201, {"meta": {"code": 201}, "data": copy.deepcopy(t)})
