"""A minimal in-memory implementation of the agent protocol's cloud side (the contract's
routes and per-field rules), served over HTTP on loopback for the agent's unit tests.
The real API and PostgreSQL come in the end-to-end tests; this one only has to be
faithful to the contract's rules: seq dedup (acked_seq), base/cur/hlc per field, results
with values, the change feed by cursor, fetch.

Test hooks: ``revoked`` (every request 401), ``down`` (every request 503),
``POISON_422`` / ``POISON_500`` as a field value fail the whole upload request,
``"bad-email"`` as an email value is rejected per record."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

AGENT_ID = "agt_01jabcdefghjkmnpqrstvwxyz0"
SOURCE = f"agent:{AGENT_ID}"


def iso(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def hlc(ms: int, counter: int = 0) -> str:
    return f"{ms:013d}-{counter:05d}"


def get_path(profile: dict[str, Any], path: str) -> Any:
    if path.startswith("attributes."):
        return (profile.get("attributes") or {}).get(path.split(".", 1)[1])
    node: Any = profile
    for part in path.split("."):
        node = (node or {}).get(part)
    return node


def set_path(profile: dict[str, Any], path: str, value: Any) -> None:
    if path.startswith("attributes."):
        profile.setdefault("attributes", {})[path.split(".", 1)[1]] = value
        return
    parts = path.split(".")
    node = profile
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


class Cloud:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.customers: dict[str, dict[str, Any]] = {}
        self.changes: list[dict[str, Any]] = []
        self.orders: dict[str, dict[str, Any]] = {}
        self.acked_seq = 0
        self.applied: list[tuple[int, str, str]] = []  # (seq, external id, field) actually written
        self.conflicts: dict[str, dict[str, Any]] = {}
        self.parked: list[dict[str, Any]] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.revoked = False
        self.down = False
        self._ms = 0

    def now_ms(self) -> int:
        self._ms = max(self._ms + 1, time.time_ns() // 1_000_000)
        return self._ms

    # --- the cloud's own writes ------------------------------------------------------------

    def create(self, profile: dict[str, Any]) -> str:
        with self.lock:
            cid = f"cus_{len(self.customers) + 1:04d}"
            self.customers[cid] = {"profile": profile, "updated_at": self.now_ms(), "external_id": None}
            self._change(cid, "customer.created")
            return cid

    def edit(self, cid: str, path: str, value: Any) -> None:
        with self.lock:
            set_path(self.customers[cid]["profile"], path, value)
            self.customers[cid]["updated_at"] = self.now_ms()
            self._change(cid, "customer.updated")

    def _change(self, cid: str, kind: str) -> None:
        self.changes.append(
            {
                "id": f"chg_{len(self.changes)}",
                "type": kind,
                "customer_id": cid,
                "committed_at": iso(self.now_ms()),
                "data": {"customer_id": cid},
            }
        )

    def by_external(self, external_id: str) -> str | None:
        for cid, c in self.customers.items():
            if c["external_id"] == external_id:
                return cid
        return None

    # --- the protocol ----------------------------------------------------------------------

    def upload(self, records: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        for r in records:
            values = [f.get("value") for f in (r.get("fields") or {}).values()]
            if "POISON_422" in values:
                return 422, {"error": {"code": "invalid", "message": "records.0: poison"}}
            if "POISON_500" in values:
                return 500, {"error": {"code": "internal", "message": "boom"}}
        results = []
        with self.lock:
            for r in records:
                results.append(self._record(r))
            self.acked_seq = max(self.acked_seq, max(r["seq"] for r in records))
        return 200, {"results": results, "acked_seq": self.acked_seq, "hlc": hlc(self.now_ms())}

    def _record(self, r: dict[str, Any]) -> dict[str, Any]:
        seq = r["seq"]
        if r.get("kind") == "order":
            if seq <= self.acked_seq:
                return {"seq": seq, "status": "duplicate", "customer_id": None, "conflicts": [], "values": {}}
            self.orders[r["external_id"]] = r["order"]
            self.applied.append((seq, r["external_id"], "order"))
            return {
                "seq": seq,
                "status": "created",
                "customer_id": "ord_" + r["external_id"],
                "conflicts": [],
                "values": {},
            }
        fields = r.get("fields") or {}
        if any(p == "email" and f.get("value") == "bad-email" for p, f in fields.items()):
            if seq > self.acked_seq:
                self.parked.append({"seq": seq, "reason": "invalid email"})
            return {
                "seq": seq,
                "status": "rejected",
                "reason": "email: not a valid email address",
                "errors": [{"field": "email"}],
                "conflicts": [],
                "values": {},
            }
        cid = r.get("customer_id") or self.by_external(r["external_id"])
        if seq <= self.acked_seq:
            c = self.customers.get(cid or "")
            return {
                "seq": seq,
                "status": "duplicate",
                "customer_id": cid,
                "conflicts": [],
                "values": {p: get_path(c["profile"], p) if c else None for p in fields},
                "updated_at": iso(c["updated_at"]) if c else None,
            }
        status = "updated"
        if cid is None:
            cid = f"cus_{len(self.customers) + 1:04d}"
            self.customers[cid] = {"profile": {}, "updated_at": 0, "external_id": r["external_id"]}
            status = "created"
        c = self.customers[cid]
        c["external_id"] = r["external_id"]
        cloud_time = hlc(c["updated_at"])
        conflicts, changed = [], False
        for path, f in fields.items():
            cur = get_path(c["profile"], path)
            if f["value"] == cur:
                continue
            if ("base" in f and f["base"] == cur) or ("base" not in f and cur is None):
                apply = True
            else:
                rule = f["rule"]
                apply = rule == "local" or (rule == "latest" and f["hlc"] > cloud_time)
                conflicts.append({"field": path, "winner": "local" if apply else "cloud", "rule": rule})
                self.conflicts[f"{seq}:{path}"] = {
                    "seq": seq,
                    "field": path,
                    "local_value": f["value"],
                    "cloud_value": cur,
                    "winner": "local" if apply else "cloud",
                }
            if apply:
                set_path(c["profile"], path, f["value"])
                self.applied.append((seq, r["external_id"], path))
                changed = True
        if changed:
            c["updated_at"] = self.now_ms()
            self._change(cid, "customer.created" if status == "created" else "customer.updated")
        elif status != "created":
            status = "unchanged"
        return {
            "seq": seq,
            "status": status,
            "customer_id": cid,
            "conflicts": conflicts,
            "values": {p: get_path(c["profile"], p) for p in fields},
            "updated_at": iso(c["updated_at"]),
        }

    def fetch(self, ids: list[str]) -> dict[str, Any]:
        with self.lock:
            data = [
                {
                    "customer_id": cid,
                    "status": "active",
                    "updated_at": iso(c["updated_at"]),
                    "external_id": c["external_id"],
                    "merged_into": None,
                    "profile": json.loads(json.dumps(c["profile"])),
                }
                for cid in ids
                if (c := self.customers.get(cid))
            ]
        return {"data": data, "hlc": hlc(self.now_ms())}

    def read_changes(self, cursor: str, limit: int) -> dict[str, Any]:
        with self.lock:
            start = len(self.changes) if cursor == "now" else int(cursor)
            page = self.changes[start : start + limit]
            end = start + len(page)
            return {"data": page, "next_cursor": str(end), "has_more": end < len(self.changes)}


class Handler(BaseHTTPRequestHandler):
    cloud: Cloud

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        cloud = self.cloud
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        cloud.requests.append((method, url.path))
        if cloud.down:
            return self._answer(503, {"error": {"code": "unavailable", "message": "down"}})
        if cloud.revoked or self.headers.get("Authorization") != "Bearer rpk_test":
            return self._answer(401, {"error": {"code": "unauthorized", "message": "no such key"}})
        base = f"/v1/agents/{AGENT_ID}"
        if method == "GET" and url.path == "/v1/agents/me":
            return self._answer(200, {"id": AGENT_ID, "name": "test", "source": SOURCE, "status": "active"})
        if method == "POST" and url.path == f"{base}/heartbeat":
            cloud.heartbeats.append(body)
            return self._answer(200, {"agent": {"id": AGENT_ID}, "hlc": hlc(cloud.now_ms())})
        if method == "POST" and url.path == f"{base}/uploads":
            return self._answer(*cloud.upload(body["records"]))
        if method == "POST" and url.path == f"{base}/fetch":
            return self._answer(200, cloud.fetch(body["customer_ids"]))
        if method == "GET" and url.path == "/v1/changes":
            query = parse_qs(url.query)
            return self._answer(200, cloud.read_changes(query["cursor"][0], int(query.get("limit", ["100"])[0])))
        if url.path.startswith("/v1/agents/"):
            return self._answer(403, {"error": {"code": "insufficient_scope", "message": "not this agent"}})
        return self._answer(404, {"error": {"code": "not_found", "message": url.path}})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class Server:
    def __init__(self) -> None:
        self.cloud = Cloud()
        handler = type("H", (Handler,), {"cloud": self.cloud})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
