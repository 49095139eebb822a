"""WooCommerce (REST API v3, ``/wp-json/wc/v3``): customers and orders, plus webhooks.

Auth: HTTP Basic with the consumer key and secret, which WooCommerce accepts over HTTPS
only; a plain-http store would need OAuth 1.0a signatures, which this connector does not
do, so the config refuses http URLs (loopback excepted, for local fakes).

Paging counts pages (``page``/``per_page``, ``X-WP-TotalPages``); the next page number is
the resume token. Orders are filtered vendor-side with ``modified_after`` (WooCommerce 5.8+)
and ordered by id, not by modified date: with page numbers, an order modified during the
read would move to the end and shift every later order back one place, skipping one at a
page boundary. The customers endpoint has no modified filter (woocommerce/woocommerce#41371),
so that stream reads every customer each run and keeps those modified in the window.
Mapping rules: :mod:`connectors.woocommerce.mapping`.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.sdk.base import Connector, CustomerRecord, OrderRecord, Page, ReadContext, Stream, WebhookDelivery
from connectors.sdk.errors import CheckFailed, VendorError
from connectors.sdk.fields import base_url, header
from connectors.sdk.http import Client
from connectors.sdk.paging import page_numbers
from connectors.sdk.secrets import Secret
from connectors.sdk.webhooks import header_id, json_delivery, verify_hmac_base64
from connectors.sdk.window import Window
from connectors.woocommerce import mapping

Channel = Literal["web", "mobile", "tv", "store", "marketplace"]
PER_PAGE = 100  # WooCommerce's maximum
ORDER_TOPICS = {"order.created", "order.updated", "order.restored"}
CUSTOMER_TOPICS = {"customer.created", "customer.updated"}


class WooCommerceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_url: str = Field(description="the WordPress site's base URL, e.g. https://shop.example.com")
    consumer_key: Secret = Field(description="REST API key (ck_...) with Read access, "
                                             "WooCommerce > Settings > Advanced > REST API")
    consumer_secret: Secret = Field(description="the key's consumer secret (cs_...)")
    webhook_secret: Secret | None = Field(default=None, description="the secret set on the "
                                          "store's webhooks (signs X-WC-Webhook-Signature)")
    channels: dict[str, Channel] = Field(default_factory=dict, description=(
        "created_via → Rapport channel, overriding the defaults (…pos… → store, else web)"))

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, v: str) -> str:
        return base_url(v, "store_url")

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: dict[str, str]) -> dict[str, str]:
        return {k.strip().lower(): c for k, c in v.items()}


def _end_of_pages(exc: VendorError) -> bool:
    """WordPress answers 400 ``*_invalid_page_number`` for a page past the end (records
    deleted since the checkpoint): the window is complete, not broken."""
    return exc.status == 400 and "invalid_page_number" in exc.vendor_body


class _WooStream(Stream):
    resource: ClassVar[str]
    vendor_filter: ClassVar[bool]  # does the endpoint take modified_after?

    def params(self, since: str | None) -> dict[str, str]:
        raise NotImplementedError

    def map(self, item: Any, config: WooCommerceConfig) -> Any:
        raise NotImplementedError

    def read(self, rc: ReadContext, state: dict[str, Any]) -> Iterator[Page]:
        window = Window(state, backfill=rc.mode == "backfill")
        page = int(window.page) if window.resumed else 1
        since = window.since
        while True:
            params = {**self.params(since), "page": str(page), "per_page": str(PER_PAGE)}
            try:
                items, response = rc.client.get_json(self.resource, params=params)
            except VendorError as exc:
                if not _end_of_pages(exc):
                    raise
                items, response = [], None
            if not isinstance(items, list):
                raise VendorError(f"GET {self.resource}: the answer is not a list")
            records = [r for r in (self.map(item, rc.config) for item in items) if r is not None]
            if since is not None and not self.vendor_filter:
                records = [r for r in records if getattr(r, "updated_at", None) is None or r.updated_at >= since]
            next_page = None
            total = None
            if response is not None:
                if "x-wp-totalpages" in response.headers:
                    next_page = page_numbers(response, page)
                elif len(items) >= PER_PAGE:  # a proxy dropped the header: go on until a short page
                    next_page = page + 1
                try:
                    total = int(response.headers.get("x-wp-total", ""))
                except ValueError:
                    total = None
            fresh = window.fresh(records)
            yield Page(fresh, state=window.advance(records, next_page), total=total)
            if next_page is None:
                return
            page = next_page


class Customers(_WooStream):
    name = "customers"
    resource = "customers"
    vendor_filter = False

    def params(self, since: str | None) -> dict[str, str]:
        return {"orderby": "id", "order": "asc"}

    def map(self, item: Any, config: WooCommerceConfig) -> Any:
        return mapping.customer(item)


class Orders(_WooStream):
    name = "orders"
    resource = "orders"
    vendor_filter = True

    def params(self, since: str | None) -> dict[str, str]:
        out = {"orderby": "id", "order": "asc", "status": "any"}
        if since:
            out.update(modified_after=since[:19], dates_are_gmt="true")  # whole seconds, rounded down
        return out

    def map(self, item: Any, config: WooCommerceConfig) -> Any:
        return mapping.order(item, config.channels)


class WooCommerce(Connector):
    name = "woocommerce"
    kind = "ecommerce"
    version = "1.0.0"
    title = "WooCommerce"
    Config = WooCommerceConfig
    streams = (Customers, Orders)
    webhooks = True

    def client(self, config: WooCommerceConfig, **options: Any) -> Client:
        """``options`` go to :class:`Client` (``sleep``, ``time_left``, ``max_wait``...)."""
        return Client(f"{config.store_url}/wp-json/wc/v3",
                      auth=httpx.BasicAuth(config.consumer_key, config.consumer_secret),
                      headers={"Accept": "application/json"}, **options)

    def check(self, config: WooCommerceConfig, client: Client) -> None:
        for resource in ("orders", "customers"):  # the two reads the streams need
            try:
                body, _ = client.get_json(resource, params={"per_page": "1"})
            except VendorError as exc:
                if exc.status == 401:
                    raise CheckFailed("WooCommerce refused the consumer key and secret (401): check the "
                                      "key exists, is not revoked, and was pasted whole", status=401) from None
                if exc.status == 403:
                    raise CheckFailed(f"the REST API key may not read {resource} (403): give it Read "
                                      "access, on a user who can manage WooCommerce", status=403) from None
                if exc.status == 404:
                    raise CheckFailed(f"no WooCommerce REST API at {config.store_url}/wp-json/wc/v3 (404): "
                                      "check store_url, that WooCommerce is active and that permalinks "
                                      "are not 'Plain'", status=404) from None
                raise CheckFailed(f"could not reach WooCommerce at {config.store_url}: {exc}",
                                  status=exc.status, kind=exc.kind) from None
            if not isinstance(body, list):
                raise CheckFailed(f"{config.store_url} did not answer like a WooCommerce store")

    def verify_webhook(self, config: WooCommerceConfig, headers: dict[str, str], body: bytes) -> None:
        verify_hmac_base64(headers, "X-WC-Webhook-Signature", config.webhook_secret, body, vendor=self.title)

    def webhook_delivery_id(self, headers: dict[str, str], body: bytes) -> str:
        """``X-WC-Webhook-Delivery-ID`` (a retry of a delivery keeps it), else a digest of the body."""
        return header_id(headers, "X-WC-Webhook-Delivery-ID") or super().webhook_delivery_id(headers, body)

    def parse_webhook(self, config: WooCommerceConfig, headers: dict[str, str], body: bytes) -> WebhookDelivery:
        topic = (header(headers, "X-WC-Webhook-Topic") or "").strip()
        # another topic (e.g. the ping sent on creation) carries no record
        map_item = (partial(mapping.order, channels=config.channels) if topic in ORDER_TOPICS
                    else mapping.customer if topic in CUSTOMER_TOPICS else None)
        delivery = json_delivery(self.webhook_delivery_id(headers, body), topic, body, map_item)
        delivery.records = [r for r in (self._reread(config, r) for r in delivery.records) if r is not None]
        return delivery

    def _reread(self, config: WooCommerceConfig, record: Any) -> Any:
        """The webhook's record as the store has it now (``Connector.reread``); the body
        stands when the store cannot be read."""
        if not isinstance(record, (CustomerRecord, OrderRecord)):
            return record
        resource = "customers" if isinstance(record, CustomerRecord) else "orders"
        item = self.reread(config, f"{resource}/{record.external_id}")
        if not isinstance(item, dict):
            return record
        return mapping.customer(item) if resource == "customers" else mapping.order(item, config.channels)
