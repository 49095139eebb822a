"""Shopify (Admin REST API, 2024-04): customers and orders, incremental, plus webhooks.

Reads page with Shopify's cursor pagination: the first request filters with
``updated_at_min`` (the window's start, cursor minus the lookback), and every next page is
the ``Link: <...page_info=...>; rel="next"`` URL exactly as Shopify gave it (Shopify
refuses any other parameter beside ``page_info`` except ``limit``). That URL is also the
resume token in the checkpoint. Mapping rules: :mod:`connectors.shopify.mapping`.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.sdk.base import Connector, CustomerRecord, OrderRecord, Page, ReadContext, Stream, WebhookDelivery
from connectors.sdk.errors import CheckFailed, VendorError
from connectors.sdk.fields import base_url, header
from connectors.sdk.http import Client
from connectors.sdk.paging import link_next
from connectors.sdk.secrets import Secret
from connectors.sdk.webhooks import header_id, json_delivery, verify_hmac_base64
from connectors.sdk.window import Window
from connectors.shopify import mapping

Channel = Literal["web", "mobile", "tv", "store", "marketplace"]
PAGE_SIZE = 250  # Shopify's maximum ``limit``
ORDER_TOPICS = {"orders/create", "orders/updated", "orders/paid", "orders/cancelled",
                "orders/fulfilled", "orders/partially_fulfilled"}
CUSTOMER_TOPICS = {"customers/create", "customers/update", "customers/enable", "customers/disable"}
CHECKOUT_TOPICS = {"checkouts/create", "checkouts/update"}  # started checkouts: cart abandonment


class ShopifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shop_url: str = Field(description="the shop's base URL, e.g. https://example.myshopify.com")
    access_token: Secret = Field(description="Admin API access token of a custom app (shpat_...) "
                                             "with read_customers and read_orders")
    webhook_secret: Secret | None = Field(default=None, description="the app's client secret, "
                                          "which signs webhook deliveries (X-Shopify-Hmac-Sha256)")
    api_version: str = Field(default="2024-04", pattern=r"^\d{4}-\d{2}$|^unstable$")
    channels: dict[str, Channel] = Field(default_factory=dict, description=(
        "source_name → Rapport channel, overriding the defaults (web→web, pos→store, "
        "iphone/android→mobile, anything else→web)"))

    @field_validator("shop_url")
    @classmethod
    def _shop_url(cls, v: str) -> str:
        return base_url(v, "shop_url")

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: dict[str, str]) -> dict[str, str]:
        return {k.strip().lower(): c for k, c in v.items()}


class _ShopifyStream(Stream):
    resource: ClassVar[str]
    params: ClassVar[dict[str, str]] = {}

    def map(self, item: Any, config: ShopifyConfig) -> Any:
        raise NotImplementedError

    def read(self, rc: ReadContext, state: dict[str, Any]) -> Iterator[Page]:
        window = Window(state, backfill=rc.mode == "backfill")
        prefix = str(rc.client.http.base_url).rstrip("/") + "/"
        total = None
        if window.resumed:
            url, params = window.page, None
        else:
            url = f"{self.resource}.json"
            params = {"limit": str(PAGE_SIZE), **self.params}
            if window.since:
                params["updated_at_min"] = window.since[:19] + "Z"  # whole seconds, rounded down
            total = self._count(rc, {k: v for k, v in params.items() if k != "limit"})
        while True:
            body, response = rc.client.get_json(url, params=params)
            items = body.get(self.resource) if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise VendorError(f"GET {self.resource}.json: no {self.resource!r} list in the answer")
            records = [self.map(item, rc.config) for item in items]
            next_url = link_next(response)
            if next_url is not None and not next_url.startswith(prefix):
                # the access token goes wherever the link points: only ever to the shop
                raise VendorError(f"Shopify's next link leaves the shop: {next_url[:120]}")
            fresh = window.fresh(records)
            yield Page(fresh, state=window.advance(records, next_url), total=total)
            if next_url is None:
                return
            url, params = next_url, None


    def _count(self, rc: ReadContext, params: dict[str, str]) -> int | None:
        """The window's size for progress bars (``<resource>/count.json``, 1 request); None
        if the shop will not say: progress then shows records read without a total."""
        try:
            body, _ = rc.client.get_json(f"{self.resource}/count.json", params=params)
        except VendorError:
            return None
        count = body.get("count") if isinstance(body, dict) else None
        return count if isinstance(count, int) and count >= 0 else None


class Customers(_ShopifyStream):
    name = "customers"
    resource = "customers"

    def map(self, item: Any, config: ShopifyConfig) -> Any:
        return mapping.customer(item)


class Orders(_ShopifyStream):
    name = "orders"
    resource = "orders"
    params: ClassVar[dict[str, str]] = {"status": "any"}  # the default is "open": closed and cancelled orders matter too

    def map(self, item: Any, config: ShopifyConfig) -> Any:
        return mapping.order(item, config.channels)


class Shopify(Connector):
    name = "shopify"
    kind = "ecommerce"
    version = "1.0.0"
    title = "Shopify"
    Config = ShopifyConfig
    streams = (Customers, Orders)
    webhooks = True

    def client(self, config: ShopifyConfig, **options: Any) -> Client:
        """``options`` go to :class:`Client` (``sleep``, ``time_left``, ``max_wait``...)."""
        return Client(f"{config.shop_url}/admin/api/{config.api_version}",
                      headers={"X-Shopify-Access-Token": config.access_token,
                               "Accept": "application/json"}, **options)

    def check(self, config: ShopifyConfig, client: Client) -> None:
        try:
            body, _ = client.get_json("shop.json")
        except VendorError as exc:
            if exc.status == 401:
                raise CheckFailed("Shopify refused the access token (401): paste the Admin API access "
                                  "token of the shop's custom app again, or reinstall the app",
                                  status=401) from None
            if exc.status == 403:
                raise CheckFailed("the access token lacks a scope (403): grant the app read_customers "
                                  "and read_orders", status=403) from None
            if exc.status == 404:
                raise CheckFailed(f"no Shopify Admin API at {config.shop_url} (404): check shop_url "
                                  f"and api_version {config.api_version}", status=404) from None
            raise CheckFailed(f"could not reach Shopify at {config.shop_url}: {exc}",
                              status=exc.status, kind=exc.kind) from None
        if not isinstance(body, dict) or not isinstance(body.get("shop"), dict):
            raise CheckFailed(f"{config.shop_url} did not answer like a Shopify shop")

    def verify_webhook(self, config: ShopifyConfig, headers: dict[str, str], body: bytes) -> None:
        verify_hmac_base64(headers, "X-Shopify-Hmac-Sha256", config.webhook_secret, body, vendor=self.title)

    def webhook_delivery_id(self, headers: dict[str, str], body: bytes) -> str:
        """``X-Shopify-Webhook-Id`` (a retry of a delivery keeps it), else a digest of the body."""
        return header_id(headers, "X-Shopify-Webhook-Id") or super().webhook_delivery_id(headers, body)

    def parse_webhook(self, config: ShopifyConfig, headers: dict[str, str], body: bytes) -> WebhookDelivery:
        topic = (header(headers, "X-Shopify-Topic") or "").strip()
        map_item = (partial(mapping.order, channels=config.channels) if topic in ORDER_TOPICS
                    else mapping.customer if topic in CUSTOMER_TOPICS
                    else mapping.checkout if topic in CHECKOUT_TOPICS else None)
        delivery = json_delivery(self.webhook_delivery_id(headers, body), topic, body, map_item)
        delivery.records = [self._reread(config, r) for r in delivery.records]
        return delivery

    def _reread(self, config: ShopifyConfig, record: Any) -> Any:
        """The webhook's record as the shop has it now (``Connector.reread``); the body
        stands when the shop cannot be read."""
        if not isinstance(record, (CustomerRecord, OrderRecord)):
            return record
        resource = "customer" if isinstance(record, CustomerRecord) else "order"
        body = self.reread(config, f"{resource}s/{record.external_id}.json")
        item = body.get(resource) if isinstance(body, dict) else None
        if not isinstance(item, dict):
            return record
        return mapping.customer(item) if resource == "customer" else mapping.order(item, config.channels)
