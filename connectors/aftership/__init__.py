"""AfterShip Tracking API (version 2026-07, ``https://api.aftership.com/tracking/2026-07``):
trackings read incrementally, created for ``POST /v1/shipments``, re-polled by the
schedule, and tracking webhooks.

Auth: the ``as-api-key`` header. Listing: ``GET /trackings?updated_at_min=<window
start>&limit=200``, paged by the ``cursor`` the answer gives (``data.pagination.
next_cursor`` while ``has_next_page``). Create: ``POST /trackings`` with
``tracking_number``, ``slug`` (the carrier; AfterShip detects it when absent) and
``order_id`` (Rapport's order id, so a tracking created in Rapport links back); a tracking
that already exists (meta code 4003) is read instead. Webhooks: ``aftership-hmac-sha256``
= base64 HMAC-SHA256(webhook secret, raw body), de-duplicated on the body's ``event_id``.
Statuses: :mod:`connectors.aftership.mapping`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.aftership import mapping
from connectors.sdk.base import Connector, Page, ReadContext, Rejected, ShipmentRecord, Stream, WebhookDelivery
from connectors.sdk.errors import CheckFailed, VendorError
from connectors.sdk.fields import base_url
from connectors.sdk.http import Client
from connectors.sdk.secrets import Secret
from connectors.sdk.webhooks import verify_hmac_base64
from connectors.sdk.window import Window

BASE_URL = "https://api.aftership.com/tracking/2026-07"
PAGE_SIZE = 200  # AfterShip's maximum limit
SIGNATURE_HEADER = "aftership-hmac-sha256"
ALREADY_EXISTS = 4003


class AfterShipConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: Secret = Field(description="an AfterShip API key (Settings > API keys)")
    webhook_secret: Secret | None = Field(default=None, description="the webhook secret shown in AfterShip's "
                                          "notification settings (signs aftership-hmac-sha256)")
    base_url: str = Field(default=BASE_URL, description="the Tracking API base, with its version")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        return base_url(v, "base_url")


def slug(carrier: str | None) -> str | None:
    """AfterShip's courier slug from a carrier name: "UPS" → ups, "DHL Express" → dhl-express."""
    if not carrier or carrier == "unknown":
        return None
    return "-".join(carrier.strip().lower().split())


class Trackings(Stream):
    name = "shipments"

    def read(self, rc: ReadContext, state: dict[str, Any]) -> Iterator[Page]:
        window = Window(state, backfill=rc.mode == "backfill")
        cursor = window.page if window.resumed else None
        since = window.since
        while True:
            params = {"limit": str(PAGE_SIZE)}
            if since:
                params["updated_at_min"] = since
            if cursor:
                params["cursor"] = str(cursor)
            body, _ = rc.client.get_json("trackings", params=params)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, dict):
                raise VendorError("GET trackings: the answer has no data")
            items = data.get("trackings") if isinstance(data.get("trackings"), list) else []
            records = [mapping.tracking(t) for t in items]
            paging = data.get("pagination") if isinstance(data.get("pagination"), dict) else {}
            next_page = paging.get("next_cursor") if paging.get("has_next_page") else None
            total = paging.get("total") if isinstance(paging.get("total"), int) else None
            yield Page(window.fresh(records), state=window.advance(records, next_page), total=total)
            if not next_page:
                return
            cursor = next_page


class AfterShip(Connector):
    name = "aftership"
    kind = "scm"
    version = "1.0.0"
    title = "AfterShip"
    Config = AfterShipConfig
    streams = (Trackings,)
    webhooks = True
    tracking = True

    def client(self, config: AfterShipConfig, **options: Any) -> Client:
        return Client(config.base_url + "/", headers={"as-api-key": config.api_key, "Accept": "application/json"},
                      **options)

    def check(self, config: AfterShipConfig, client: Client) -> None:
        try:
            body, _ = client.get_json("trackings", params={"limit": "1"})
        except VendorError as exc:
            if exc.status in (401, 403):
                raise CheckFailed(f"AfterShip refused the API key ({exc.status}): check it was pasted whole "
                                  "and has the Tracking API enabled", status=exc.status) from None
            if exc.status == 404:
                raise CheckFailed(f"no AfterShip Tracking API at {config.base_url} (404): check base_url and its "
                                  "version", status=404) from None
            raise CheckFailed(f"could not reach AfterShip at {config.base_url}: {exc}", status=exc.status,
                              kind=exc.kind) from None
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise CheckFailed(f"{config.base_url} did not answer like AfterShip's Tracking API")

    def _record(self, body: Any) -> ShipmentRecord:
        record = mapping.tracking(mapping.unwrap(body))
        if isinstance(record, Rejected):
            raise VendorError(f"AfterShip answered with a tracking Rapport cannot read: {record.reason}")
        return record

    def create_tracker(self, config: AfterShipConfig, client: Client, tracking_number: str, carrier: str | None,
                       reference: str | None) -> ShipmentRecord:
        body: dict[str, Any] = {"tracking_number": tracking_number}
        if slug(carrier):
            body["slug"] = slug(carrier)
        if reference:
            body["order_id"] = reference
        try:
            response = client.request("POST", "trackings", json=body)
        except VendorError as exc:
            if exc.status in (400, 409) and str(ALREADY_EXISTS) in exc.vendor_body:
                return self.fetch_tracker(config, client, "", tracking_number, carrier or "")
            raise
        return self._record(response.json())

    def fetch_tracker(self, config: AfterShipConfig, client: Client, tracker_id: str, tracking_number: str,
                      carrier: str) -> ShipmentRecord:
        if tracker_id:
            body, _ = client.get_json(f"trackings/{tracker_id}")
            return self._record(body)
        body, _ = client.get_json("trackings", params={"tracking_numbers": tracking_number, "limit": "1"})
        data = body.get("data") if isinstance(body, dict) else None
        found = data.get("trackings") if isinstance(data, dict) else None
        if not isinstance(found, list) or not found:
            raise VendorError(f"AfterShip has no tracking for {tracking_number}", status=404)
        return self._record({"data": found[0]})

    def verify_webhook(self, config: AfterShipConfig, headers: dict[str, str], body: bytes) -> None:
        verify_hmac_base64(headers, SIGNATURE_HEADER, config.webhook_secret, body, vendor=self.title)

    def webhook_delivery_id(self, headers: dict[str, str], body: bytes) -> str:
        """The body's ``event_id`` (a retried delivery keeps it); the body is verified by then."""
        try:
            event_id = json.loads(body).get("event_id")
        except (ValueError, AttributeError):
            event_id = None
        if isinstance(event_id, str) and event_id:
            return "aftership:" + event_id[:100]
        return super().webhook_delivery_id(headers, body)

    def parse_webhook(self, config: AfterShipConfig, headers: dict[str, str], body: bytes) -> WebhookDelivery:
        delivery_id = self.webhook_delivery_id(headers, body)
        try:
            payload = json.loads(body)
        except ValueError:
            return WebhookDelivery(delivery_id, "", [Rejected(None, "the body is not JSON")])
        record = mapping.webhook(payload)
        topic = str(payload.get("event") or "") if isinstance(payload, dict) else ""
        return WebhookDelivery(delivery_id, topic, [record] if record is not None else [])
