"""Webhook delivery for the Stripe double: each event signed as Stripe signs it
(``Stripe-Signature: t=<unix>,v1=<HMAC-SHA256(secret, "<t>.<body>")>``, re-signed per attempt),
POSTed by a background thread in creation order, retried after each non-2xx or connection error
with the configured delays. A test can hold deliveries and release them in an order it chooses,
to prove a handler is order-independent, or deliver an event again, to prove it is idempotent."""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def signature(secret: str, body: bytes, t: int) -> str:
    """The ``Stripe-Signature`` header value for ``body`` signed at ``t``."""
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


@dataclass
class Record:
    event: dict
    body: bytes
    attempts: list[dict] = field(default_factory=list)
    delivered: bool = False

    def view(self) -> dict:
        return {**self.event, "pending_webhooks": 0 if self.delivered else 1,
                "delivered": self.delivered, "attempts": [dict(a) for a in self.attempts]}


class Deliveries:
    def __init__(self, secret: str, retry_delays: Sequence[float], url: Callable[[], str | None]) -> None:
        self.secret, self.retry_delays, self._url = secret, tuple(retry_delays), url
        self.records: dict[str, Record] = {}      # by event id, in creation order
        self.holding = False
        self._held: list[Record] = []
        self._queue: list[tuple[float, int, str, int]] = []  # (due, seq, event id, attempt number)
        self._seq = itertools.count()
        self._inflight = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._http = httpx.Client(timeout=10)
        self._thread = threading.Thread(target=self._run, name="stripe-double-delivery", daemon=True)
        self._thread.start()

    # -- queueing ------------------------------------------------------------------------
    def add(self, event: dict, body: bytes) -> None:
        with self._cond:
            rec = self.records[event["id"]] = Record(event, body)
            if self.holding:
                self._held.append(rec)
            elif self._url():
                self._push(rec.event["id"], 0, 0.0)

    def _push(self, event_id: str, attempt: int, delay: float) -> None:
        heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), event_id, attempt))
        self._cond.notify_all()

    def hold(self) -> None:
        with self._cond:
            self.holding = True

    def release(self, order: None | str | Sequence[str] | random.Random = None) -> list[str]:
        """Deliver the held events in ``order`` (None: creation order; "reverse"; a list of
        event ids, the unlisted ones after it; a ``random.Random`` to shuffle with), one at a
        time, each answered before the next; then stop holding. Failed ones are retried in the
        background. Returns the event ids in the order delivered."""
        with self._cond:
            held, self._held, self.holding = self._held, [], False
        if order == "reverse":
            held.reverse()
        elif isinstance(order, random.Random):
            order.shuffle(held)
        elif order is not None and not isinstance(order, str):
            by_id = {r.event["id"]: r for r in held}
            unknown = [i for i in order if i not in by_id]
            if unknown:
                with self._cond:  # put them back: nothing delivered
                    self._held, self.holding = held + self._held, True
                raise KeyError(f"not held: {', '.join(unknown)}")
            listed = [by_id[i] for i in order]
            held = listed + [r for r in held if r.event["id"] not in set(order)]
        elif order is not None:
            raise ValueError(f"unknown order {order!r}: None, 'reverse', a list of event ids or a random.Random")
        for rec in held:
            self._attempt(rec, 0)
        return [r.event["id"] for r in held]

    def views(self) -> list[dict]:
        """Every event in creation order, with ``delivered`` and ``attempts``."""
        with self._cond:
            return [r.view() for r in self.records.values()]

    def redeliver(self, event_id: str) -> dict:
        """One more delivery of an already created event (a duplicate, as Stripe may send)."""
        rec = self.records[event_id]
        return self._attempt(rec, None)

    # -- sending -------------------------------------------------------------------------
    def _attempt(self, rec: Record, attempt: int | None) -> dict:
        url = self._url()
        t = int(time.time())
        result: dict[str, Any] = {"at": t, "url": url, "status": None, "error": None}
        if not url:
            result["error"] = "no webhook_url"
        else:
            try:
                r = self._http.post(url, content=rec.body, headers={
                    "Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
                    "Stripe-Signature": signature(self.secret, rec.body, t)})
                result["status"] = r.status_code
            except httpx.HTTPError as exc:
                result["error"] = f"{type(exc).__name__}: {exc}"
        ok = result["status"] is not None and 200 <= result["status"] < 300
        with self._cond:
            rec.attempts.append(result)
            rec.delivered = rec.delivered or ok
            if not ok and attempt is not None and attempt < len(self.retry_delays) and url:
                self._push(rec.event["id"], attempt + 1, self.retry_delays[attempt])
            self._cond.notify_all()
        return dict(result)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._queue or self._queue[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._queue else max(0.0, self._queue[0][0] - time.monotonic()))
                if self._stopped:
                    return
                _, _, event_id, attempt = heapq.heappop(self._queue)
                self._inflight += 1
            try:
                self._attempt(self.records[event_id], attempt)
            finally:
                with self._cond:
                    self._inflight -= 1
                    self._cond.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once nothing is queued or being sent (held events do not count)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self._http.close()
