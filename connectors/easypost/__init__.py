"""EasyPost (API v2, https://api.easypost.com/v2): trackers, read incrementally, created
for ``POST /v1/shipments``, re-polled by the schedule, and ``tracker.updated`` webhooks.

Auth: HTTP Basic with the API key as the user name. Webhooks: ``X-Hmac-Signature:
hmac-sha256-hex=<hex HMAC-SHA256(NFKD(webhook_secret), raw body)>`` (EasyPost's client
libraries normalise the secret to NFKD; the golden vector in the shared fixtures checks
it), de-duplicated on the Event's id. Statuses: :mod:`connectors.easypost.mapping`.

The trackers list filters on creation time only (``start_datetime``), newest first, paged
with ``before_id``; the stream reads the trackers created in the 30 days before the
window (a parcel's news comes within that) and keeps those updated in it. Parcels older
than that are kept current by the re-poll schedule (``GET /trackers/<id>``).
"""
from __future__ import annotations

import hmac
import json
import unicodedata
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from common import clock
from connectors.easypost import mapping
from connectors.sdk.base import Connector, Page, ReadContext, Rejected, ShipmentRecord, Stream, WebhookDelivery
from connectors.sdk.errors import CheckFailed, VendorError, WebhookRejected
from connectors.sdk.fields import base_url, header
from connectors.sdk.http import Client
from connectors.sdk.secrets import Secret, TextSecret
from connectors.sdk.window import Window

BASE_URL = "https://api.easypost.com/v2"
PAGE_SIZE = 100  # EasyPost's maximum page_size
CREATED_BEFORE_UPDATE = timedelta(days=30)
SIGNATURE_PREFIX = "hmac-sha256-hex="


class EasyPostConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: Secret = Field(description="an EasyPost API key (production or test)")
    webhook_secret: TextSecret | None = Field(
        default=None, description="the secret of the EasyPost webhook pointed at this connection's webhook_url"
    )
    base_url: str = Field(default=BASE_URL, description="EasyPost's API base (change only for a proxy or a test)")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        return base_url(v, "base_url")


def signature(secret: str, body: bytes) -> str:
    """The ``X-Hmac-Signature`` value EasyPost sends for ``body``."""
    key = unicodedata.normalize("NFKD", secret).encode()
    return SIGNATURE_PREFIX + hmac.new(key, body, "sha256").hexdigest()


def _list(t: Any) -> list[Any]:
    return t if isinstance(t, list) else []


class Trackers(Stream):
    name = "shipments"

    def read(self, rc: ReadContext, state: dict[str, Any]) -> Iterator[Page]:
        window = Window(state, backfill=rc.mode == "backfill")
        before_id = window.page if window.resumed else None
        since = window.since
        while True:
            params = {"page_size": str(PAGE_SIZE)}
            if since:
                params["start_datetime"] = clock.iso(clock.parse(since) - CREATED_BEFORE_UPDATE)
            if before_id:
                params["before_id"] = str(before_id)
            body, _ = rc.client.get_json("trackers", params=params)
            if not isinstance(body, dict):
                raise VendorError("GET trackers: the answer is not an object")
            items = _list(body.get("trackers"))
            records = [mapping.tracker(t) for t in items]
            if since is not None:
                records = [r for r in records if isinstance(r, Rejected) or r.updated_at >= since]
            last = items[-1].get("id") if items and isinstance(items[-1], dict) else None
            next_page = last if body.get("has_more") and last else None
            yield Page(window.fresh(records), state=window.advance(records, next_page))
            if next_page is None:
                return
            before_id = next_page


class EasyPost(Connector):
    name = "easypost"
    kind = "scm"
    version = "1.0.0"
    title = "EasyPost"
    Config = EasyPostConfig
    streams = (Trackers,)
    webhooks = True
    tracking = True

    def client(self, config: EasyPostConfig, **options: Any) -> Client:
        return Client(config.base_url + "/", auth=httpx.BasicAuth(config.api_key, ""),
                      headers={"Accept": "application/json"}, **options)

    def check(self, config: EasyPostConfig, client: Client) -> None:
        try:
            body, _ = client.get_json("trackers", params={"page_size": "1"})
        except VendorError as exc:
            if exc.status in (401, 403):
                raise CheckFailed(f"EasyPost refused the API key ({exc.status}): check it was pasted whole "
                                  "and is not disabled", status=exc.status) from None
            raise CheckFailed(f"could not reach EasyPost at {config.base_url}: {exc}", status=exc.status,
                              kind=exc.kind) from None
        if not isinstance(body, dict) or "trackers" not in body:
            raise CheckFailed(f"{config.base_url} did not answer like EasyPost")

    def _record(self, t: Any) -> ShipmentRecord:
        record = mapping.tracker(t)
        if isinstance(record, Rejected):
            raise VendorError(f"EasyPost answered with a tracker Rapport cannot read: {record.reason}")
        return record

    def create_tracker(self, config: EasyPostConfig, client: Client, tracking_number: str, carrier: str | None,
                       reference: str | None) -> ShipmentRecord:
        """``POST /trackers``; EasyPost answers the existing tracker for a code it tracks."""
        tracker = {"tracking_code": tracking_number, **({"carrier": carrier} if carrier else {})}
        response = client.request("POST", "trackers", json={"tracker": tracker})
        return self._record(response.json())

    def fetch_tracker(self, config: EasyPostConfig, client: Client, tracker_id: str, tracking_number: str,
                      carrier: str) -> ShipmentRecord:
        if tracker_id:
            body, _ = client.get_json(f"trackers/{tracker_id}")
            return self._record(body)
        body, _ = client.get_json("trackers", params={"tracking_code": tracking_number, "page_size": "1"})
        found = _list(body.get("trackers") if isinstance(body, dict) else None)
        if not found:
            raise VendorError(f"EasyPost has no tracker for {tracking_number}", status=404)
        return self._record(found[0])

    def verify_webhook(self, config: EasyPostConfig, headers: dict[str, str], body: bytes) -> None:
        if not config.webhook_secret:
            raise WebhookRejected("no webhook secret is configured for this EasyPost connection")
        given = (header(headers, "X-Hmac-Signature") or "").strip()
        if not given:
            raise WebhookRejected("missing X-Hmac-Signature")
        if not hmac.compare_digest(given.lower().encode(), signature(config.webhook_secret, body).encode()):
            raise WebhookRejected("X-Hmac-Signature does not match the body")

    def webhook_delivery_id(self, headers: dict[str, str], body: bytes) -> str:
        """The Event's id (``evt_…``): EasyPost retries a delivery with the same Event. Read
        from the body, which is verified by then."""
        try:
            event_id = json.loads(body).get("id")
        except (ValueError, AttributeError):
            event_id = None
        if isinstance(event_id, str) and event_id:
            return "easypost:" + event_id[:100]
        return super().webhook_delivery_id(headers, body)

    def parse_webhook(self, config: EasyPostConfig, headers: dict[str, str], body: bytes) -> WebhookDelivery:
        delivery_id = self.webhook_delivery_id(headers, body)
        try:
            event = json.loads(body)
        except ValueError:
            return WebhookDelivery(delivery_id, "", [Rejected(None, "the body is not JSON")])
        record = mapping.event(event)
        topic = str(event.get("description") or "") if isinstance(event, dict) else ""
        return WebhookDelivery(delivery_id, topic, [record] if record is not None else [])
