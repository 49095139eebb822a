"""A fake EasyPost API v2 (``/v2/trackers``, webhooks) replaying EasyPost's own payloads.

Trackers are rendered from ``easypost/trackers-retrieve.json`` (the API docs' response of
``GET /v2/trackers/:id``, EasyPost/examples, MIT) with id, tracking code, carrier, status,
times and ``tracking_details`` varied; a webhook is the Event envelope of
``easypost/event-body_tracker.updated.json`` around the tracker, signed as EasyPost signs
(``X-Hmac-Signature: hmac-sha256-hex=<hex HMAC-SHA256(NFKD(secret), body)>``).

Behaviour: HTTP Basic auth with the API key as the user (else 401 with EasyPost's error
body); ``GET /v2/trackers`` newest first, ``page_size`` (at most ``max_page_size``, 100),
``before_id``, ``start_datetime`` (on ``created_at``, inclusive), ``tracking_code``, and
``has_more``; ``GET /v2/trackers/:id``; ``POST /v2/trackers`` ``{"tracker":
{"tracking_code", "carrier"}}`` creates one (201) or answers the existing tracker of that
code (200), and refuses the codes in ``refused`` with 422 like EasyPost.
Controls: ``seed``, ``add``, ``scan`` (a carrier event: a new tracking detail, a newer
``updated_at``), ``signed_webhook`` / ``forged_webhook`` (replay: send the same bytes
again), plus :class:`tests.fakes.carriers.FakeCarrier`'s faults and request log.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import unicodedata
from typing import Any, Callable

from tests.fakes import Reply, epoch, fixture
from tests.fakes.carriers import FakeCarrier, iso

BASE_TIME = "2025-05-09T20:00:00Z"


def sign(secret: str, body: bytes) -> str:
    key = unicodedata.normalize("NFKD", secret).encode()
    return "hmac-sha256-hex=" + hmac.new(key, body, hashlib.sha256).hexdigest()


class FakeEasyPost(FakeCarrier):
    def __init__(self, api_key: str = "EZTK_test_key", base_time: str = BASE_TIME) -> None:
        super().__init__()
        self.api_key = api_key
        self.now = epoch(base_time)
        self.trackers: dict[str, dict[str, Any]] = {}
        self.refused: set[str] = set()
        self._ids = itertools.count(1)
        self._template = fixture("easypost", "trackers-retrieve.json")
        self._event = fixture("easypost", "event-body_tracker.updated.json")

    # vendor-side data -------------------------------------------------------------------
    def tick(self) -> int:
        with self.lock:
            self.now += 1
            return self.now

    def add(self, tracking_code: str, carrier: str = "USPS", *, created_at: str | None = None,
            updated_at: str | None = None, status: str = "pre_transit") -> dict[str, Any]:
        """A tracker as EasyPost creates it (one pre_transit detail)."""
        with self.lock:
            n = next(self._ids)
            created = epoch(created_at) if created_at else self.tick()
            updated = epoch(updated_at) if updated_at else created
            t = copy.deepcopy(self._template)
            t.update(id=f"trk_{n:032x}", tracking_code=tracking_code, carrier=carrier, status=status,
                     status_detail="status_update", created_at=iso(created), updated_at=iso(updated),
                     public_url=f"https://track.easypost.com/djE6dHJrXz{n:08d}")
            t["tracking_details"] = [self._detail("pre_transit", iso(created), "Shipping Label Created", "HOUSTON")]
            self.trackers[t["id"]] = t
            self.now = max(self.now, created, updated)
            return t

    def seed(self, count: int, *, updated_at: str | Callable[[int], str] | None = None,
             carrier: str = "USPS", prefix: str = "EZ") -> list[dict[str, Any]]:
        """``count`` trackers (codes ``<prefix>1000000001``…), created a second apart;
        ``updated_at`` one time for all (many sharing one second) or a function of i."""
        out = []
        for i in range(count):
            stamp = updated_at if isinstance(updated_at, str) or updated_at is None else updated_at(i)
            out.append(self.add(f"{prefix}{1000000001 + len(self.trackers)}", carrier, updated_at=stamp))
        return out

    def _detail(self, status: str, at: str, message: str, city: str | None) -> dict[str, Any]:
        d = copy.deepcopy(self._template["tracking_details"][-1])
        d.update(status=status, status_detail="arrived_at_facility" if status == "in_transit" else "status_update",
                 datetime=at, message=message, description=message)
        d["tracking_location"] = {**d["tracking_location"], "city": city}
        return d

    def by_code(self, tracking_code: str) -> dict[str, Any] | None:
        return next((t for t in self.trackers.values() if t["tracking_code"] == tracking_code), None)

    def scan(self, tracking_code: str, status: str, at: str, message: str = "Scanned",
             city: str | None = "MEMPHIS", updated_at: str | None = None) -> dict[str, Any]:
        """A carrier event: a tracking detail at ``at`` (details stay in time order, as
        EasyPost lists them), the tracker's status = its latest detail's, a newer updated_at."""
        with self.lock:
            t = self.by_code(tracking_code)
            assert t is not None, tracking_code
            t["tracking_details"].append(self._detail(status, at, message, city))
            t["tracking_details"].sort(key=lambda d: d["datetime"])
            t["status"] = t["tracking_details"][-1]["status"]
            t["updated_at"] = iso(epoch(updated_at) if updated_at else self.tick())
            return copy.deepcopy(t)

    # webhooks ---------------------------------------------------------------------------
    def event_body(self, tracking_code: str, event_id: str | None = None, tracker: dict | None = None) -> bytes:
        """The Event EasyPost POSTs for the tracker as it is now (or as given: an old copy)."""
        event = copy.deepcopy(self._event)
        t = copy.deepcopy(tracker or self.by_code(tracking_code))
        event.update(id=event_id or f"evt_{hashlib.sha1(json.dumps(t, sort_keys=True).encode()).hexdigest()[:24]}",
                     result=t, created_at=t["updated_at"], updated_at=t["updated_at"])
        return json.dumps(event).encode()

    def signed_webhook(self, secret: str, tracking_code: str, **kw: Any) -> tuple[dict[str, str], bytes]:
        body = self.event_body(tracking_code, **kw)
        return {"X-Hmac-Signature": sign(secret, body), "Content-Type": "application/json"}, body

    def forged_webhook(self, tracking_code: str, **kw: Any) -> tuple[dict[str, str], bytes]:
        return self.signed_webhook("not-the-secret", tracking_code, **kw)

    # API --------------------------------------------------------------------------------
    def _authorized(self, headers: dict[str, str]) -> bool:
        value = headers.get("authorization", "")
        if not value.startswith("Basic "):
            return False
        user = base64.b64decode(value[6:]).decode(errors="replace").split(":", 1)[0]
        return hmac.compare_digest(user, self.api_key)

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any) -> Reply:
        if not self._authorized(headers):
            return Reply(401, {"error": {"code": "APIKEY.REQUIRED", "message": "Invalid or missing API Key.",
                                         "errors": []}})
        if path == "/v2/trackers" and method == "GET":
            return self._list(query)
        if path == "/v2/trackers" and method == "POST":
            return self._create(body)
        if path.startswith("/v2/trackers/") and method == "GET":
            t = self.trackers.get(path.rsplit("/", 1)[1])
            if t is None:
                return Reply(404, {"error": {"code": "NOT_FOUND", "message": "The requested resource could not be "
                                             "found.", "errors": []}})
            return Reply(200, copy.deepcopy(t))
        return Reply(404, {"error": {"code": "NOT_FOUND", "message": "not found", "errors": []}})

    def _list(self, query: dict[str, str]) -> Reply:
        size = min(int(query.get("page_size", "20")), self.max_page_size)
        with self.lock:
            rows = sorted(self.trackers.values(), key=lambda t: (t["created_at"], t["id"]), reverse=True)
            if "start_datetime" in query:
                start = epoch(query["start_datetime"])
                rows = [t for t in rows if epoch(t["created_at"]) >= start]
            if "tracking_code" in query:
                rows = [t for t in rows if t["tracking_code"] == query["tracking_code"]]
            if "before_id" in query:
                ids = [t["id"] for t in rows]
                cut = ids.index(query["before_id"]) + 1 if query["before_id"] in ids else len(rows)
                rows = rows[cut:]
            page = [copy.deepcopy(t) for t in rows[:size]]
        return Reply(200, {"trackers": page, "has_more": len(rows) > size})

    def _create(self, body: Any) -> Reply:
        spec = (body or {}).get("tracker") if isinstance(body, dict) else None
        code = (spec or {}).get("tracking_code")
        if not code or code in self.refused:
            return Reply(422, {"error": {"code": "TRACKER.TRACKING_CODE.INVALID",
                                         "message": "Invalid tracking code.", "errors": []}})
        existing = self.by_code(code)
        if existing is not None:
            return Reply(200, copy.deepcopy(existing))
        return Reply(201, copy.deepcopy(self.add(code, spec.get("carrier") or "USPS")))
