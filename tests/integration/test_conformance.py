"""The conformance kit (connectors/sdk/conformance.py) run for every connector in this
repository against its fake vendor: Shopify (customers, orders), WooCommerce (customers,
which the vendor cannot filter by date, and orders, which it can), the CSV import (a
file connector: the checks about a vendor API are declared not applicable, and the
output says why) and the partner example (tests/partner, an installed package).

Each adapter is the connector's fake behind the kit's nine methods; docs/connectors.md,
"Conformance kit", says how a partner writes one."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rapport_acme import Acme, AcmeConfig, Contacts

from connectors.aftership import AfterShip
from connectors.csvfile import Config as CsvConfig
from connectors.csvfile import CsvFile
from connectors.easypost import EasyPost
from connectors.sdk.base import Page, ReadContext
from connectors.sdk.conformance import ConformanceAdapter, ConnectorConformance, Mode
from connectors.sdk.errors import CheckFailed, VendorError
from connectors.shopify import Shopify, ShopifyConfig
from connectors.woocommerce import WooCommerce, WooCommerceConfig
from tests.fakes import FakeShop
from tests.fakes.acme import AcmeServer
from tests.fakes.aftership import FakeAfterShip
from tests.fakes.easypost import FakeEasyPost
from tests.fakes.shopify import FakeShopify
from tests.fakes.uploads import MAPPING, UPLOAD_ID, FakeUploads
from tests.fakes.woocommerce import FakeWooCommerce

SECRET = "whsec-conformance"


class ShopAdapter(ConformanceAdapter):
    """Shopify's and WooCommerce's fakes share their records and controls (tests/fakes)."""

    kind: ClassVar[str]
    fake: FakeShop

    def make(self) -> FakeShop:
        raise NotImplementedError

    def start(self) -> None:
        self.fake = self.make()
        self.fake.max_page_size = self.page_size
        self.fake.start()

    def stop(self) -> None:
        self.fake.stop()

    def seed(self, updated_at: Sequence[str]) -> list[str]:
        new = self.fake.seed(**{self.kind: len(updated_at)}, updated_at=list(updated_at))
        return [str(i) for i in new[self.kind]]

    def update(self, external_id: str, updated_at: str) -> None:
        self.fake._update(self.kind, int(external_id), updated_at, {})

    def fail_next(self, count: int, status: int, headers: dict[str, str] | None = None) -> None:
        self.fake.fail_next(count, status, headers)

    def clear_faults(self) -> None:
        self.fake.clear_faults()

    def webhook(self, external_id: str, *, forged: bool = False) -> tuple[dict[str, str], bytes]:
        fake: Any = self.fake
        if forged:
            return fake.forged_delivery(self.kind, int(external_id))
        return fake.delivery(self.kind, int(external_id), SECRET)


class ShopifyCustomers(ShopAdapter):
    connector = Shopify
    stream = kind = "customers"

    def make(self) -> FakeShop:
        return FakeShopify()

    def config(self) -> ShopifyConfig:
        fake: Any = self.fake
        return ShopifyConfig(shop_url=fake.url, access_token=fake.token, webhook_secret=SECRET)


class ShopifyOrders(ShopifyCustomers):
    stream = kind = "orders"


class WooCustomers(ShopAdapter):
    connector = WooCommerce
    stream = kind = "customers"

    def make(self) -> FakeShop:
        return FakeWooCommerce()

    def config(self) -> WooCommerceConfig:
        fake: Any = self.fake
        return WooCommerceConfig(store_url=fake.url, consumer_key=fake.key, consumer_secret=fake.secret,
                                 webhook_secret=SECRET)


class WooOrders(WooCustomers):
    stream = kind = "orders"


class CsvAdapter(ConformanceAdapter):
    """A file has no update times and no vendor API: each run imports its upload, cut
    into pages by row number (paging, ties and resume apply to those chunks)."""

    connector = CsvFile
    stream = "customers"
    not_applicable: ClassVar[dict[str, str]] = {
        "incremental": "a file connector has no update times: every run imports its own upload whole, "
                       "and re-importing a file writes each row as unchanged",
        "throttling": "the file is read from Rapport's own upload bucket: no vendor to throttle",
        "auth": "no vendor credentials: the upload is the tenant's own, behind Rapport's API key",
        "server_errors": "no vendor API to fail: a missing or undecodable upload fails the run as config",
    }

    def start(self) -> None:
        self.uploads = FakeUploads(max_page_size=self.page_size).start()

    def stop(self) -> None:
        self.uploads.stop()

    def config(self) -> CsvConfig:
        return CsvConfig(mapping=MAPPING)

    def seed(self, updated_at: Sequence[str]) -> list[str]:
        return self.uploads.seed(len(updated_at))  # rows carry no time: the file is the snapshot

    def read_context(self, config: Any, client: Any, mode: Mode, run_id: str) -> ReadContext:
        return ReadContext(config=config, client=client, mode=mode, tenant_id="t_conformance",
                           connection_id="con_conformance", run_id=run_id, upload_id=UPLOAD_ID)


class AcmeAdapter(ConformanceAdapter):
    """The partner example, through its own package and its fake (tests/fakes/acme.py)."""

    connector = Acme
    stream = "customers"

    def start(self) -> None:
        self.server = AcmeServer()
        self.server.max_page_size = self.page_size
        self.server.__enter__()

    def stop(self) -> None:
        self.server.__exit__(None, None, None)

    def config(self) -> AcmeConfig:
        return AcmeConfig(base_url=self.server.url, api_token=self.server.token)  # type: ignore[arg-type]

    def seed(self, updated_at: Sequence[str]) -> list[str]:
        return self.server.seed(updated_at)

    def update(self, external_id: str, updated_at: str) -> None:
        self.server.touch(external_id, updated_at)

    def fail_next(self, count: int, status: int, headers: dict[str, str] | None = None) -> None:
        self.server.fail_next(count, status, headers)

    def clear_faults(self) -> None:
        self.server.clear_faults()


class TestShopifyCustomersConformance(ConnectorConformance):
    adapter = ShopifyCustomers


class TestShopifyOrdersConformance(ConnectorConformance):
    adapter = ShopifyOrders


class TestWooCommerceCustomersConformance(ConnectorConformance):
    adapter = WooCustomers


class TestWooCommerceOrdersConformance(ConnectorConformance):
    adapter = WooOrders


class TestCsvConformance(ConnectorConformance):
    adapter = CsvAdapter


class TestAcmeConformance(ConnectorConformance):
    adapter = AcmeAdapter


# the kit fails what it must: broken variants of the partner example --------------------

class ForgetfulContacts(Contacts):
    """Checkpoints without the overlap's ``seen``: the next window reads its tail again."""

    def read(self, rc: ReadContext, state: dict[str, Any]) -> Any:
        for page in super().read(rc, state):
            yield Page(page.records, {**page.state, "seen": {}})


class ForgetfulAcme(Acme):
    streams = (ForgetfulContacts,)


class OpaqueCheckAcme(Acme):
    """Wraps a refusal without its status or cause: POST .../check could only say ``vendor``."""

    def check(self, config: Any, client: Any) -> None:
        try:
            client.get("/v2/me")
        except VendorError:
            raise CheckFailed("Acme said no") from None


def kit_failure(adapter: type[ConformanceAdapter], check: str) -> str:
    """The kit's verdict on ``adapter``'s connector for ``check``: its assertion message."""
    suite = type("Suite", (ConnectorConformance,), {"adapter": adapter})()
    try:
        suite.setup_method(None)  # a declaration is judged here, before any check runs
    except AssertionError as exc:
        return str(exc)
    try:
        getattr(suite, check)()
    except AssertionError as exc:
        return str(exc)
    finally:
        suite.teardown_method(None)
    raise AssertionError(f"{check} passed a broken connector")


def test_the_kit_fails_a_connector_that_reads_its_overlap_again():
    adapter = type("A", (AcmeAdapter,), {"connector": ForgetfulAcme})
    assert "resumed after page" in kit_failure(adapter, "test_resume")
    assert "read although unchanged" in kit_failure(adapter, "test_incremental")


def test_the_kit_fails_a_check_that_hides_a_refusal():
    adapter = type("A", (AcmeAdapter,), {"connector": OpaqueCheckAcme})
    assert "classified 'vendor'" in kit_failure(adapter, "test_auth")


def test_the_kit_refuses_a_declaration_a_connector_cannot_make():
    adapter = type("A", (AcmeAdapter,), {"not_applicable": {"auth": "we would rather not"}})
    assert "only by a file connector" in kit_failure(adapter, "test_auth")
    adapter = type("A", (AcmeAdapter,), {"not_applicable": {"paging": "too many pages"}})
    assert "apply to every connector" in kit_failure(adapter, "test_paging")


# shipping (issue 14 §4): trackers as the carriers' APIs list them -------------------------

class CarrierAdapter(ConformanceAdapter):
    """EasyPost's and AfterShip's fakes (tests/fakes/carriers.py): one tracker per seeded
    time, external id = the provider's tracker id."""

    stream = "shipments"
    prefix: ClassVar[str]

    def make(self) -> Any:
        raise NotImplementedError

    def start(self) -> None:
        self.fake = self.make()
        self.fake.start()
        self.fake.set_page_size(self.page_size)

    def stop(self) -> None:
        self.fake.stop()

    def seed(self, updated_at: Sequence[str]) -> list[str]:
        return [self.fake.add(f"{self.prefix}{100000 + len(self._trackers()) + 1}", updated_at=at)["id"]
                for at in updated_at]

    def _trackers(self) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def update(self, external_id: str, updated_at: str) -> None:
        with self.fake.lock:
            tracker = self._trackers()[external_id]
            tracker["updated_at"] = updated_at.replace(".000Z", "Z")
            if "last_updated_at" in tracker:
                tracker["last_updated_at"] = tracker["updated_at"]

    def fail_next(self, count: int, status: int, headers: dict[str, str] | None = None) -> None:
        self.fake.fail_next_with(count, status, headers)

    def clear_faults(self) -> None:
        with self.fake.lock:
            self.fake._faults.clear()

    def webhook(self, external_id: str, *, forged: bool = False) -> tuple[dict[str, str], bytes]:
        number = self._trackers()[external_id][self.number_field]
        return self.fake.forged_webhook(number) if forged else self.fake.signed_webhook(SECRET, number)

    number_field: ClassVar[str]


class EasyPostShipments(CarrierAdapter):
    connector = EasyPost
    prefix = "EZ"
    number_field = "tracking_code"

    def make(self) -> Any:
        return FakeEasyPost()

    def _trackers(self) -> dict[str, dict[str, Any]]:
        return self.fake.trackers

    def config(self) -> Any:
        return EasyPost.Config(api_key=self.fake.api_key, webhook_secret=SECRET, base_url=self.fake.url + "/v2")


class AfterShipShipments(CarrierAdapter):
    connector = AfterShip
    prefix = "AS"
    number_field = "tracking_number"

    def make(self) -> Any:
        return FakeAfterShip()

    def _trackers(self) -> dict[str, dict[str, Any]]:
        return self.fake.trackings

    def config(self) -> Any:
        return AfterShip.Config(api_key=self.fake.api_key, webhook_secret=SECRET,
                                base_url=self.fake.url + "/tracking/2026-07")


class TestEasyPostConformance(ConnectorConformance):
    adapter = EasyPostShipments


class TestAfterShipConformance(ConnectorConformance):
    adapter = AfterShipShipments
