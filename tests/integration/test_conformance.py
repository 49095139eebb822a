"""The conformance kit (connectors/sdk/conformance.py) run for every connector in this
repository against its fake vendor: Shopify (customers, orders), WooCommerce (customers,
which the vendor cannot filter by date, and orders, which it can), the CSV import (a
file connector: the checks about a vendor API are declared not applicable, and the
output says why) and the partner example (tests/partner, an installed package).

Each adapter is the connector's fake behind the kit's nine methods; docs/connectors.md,
"Conformance kit", says how a partner writes one."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from rapport_acme import Acme, AcmeConfig, Contacts

from connectors.aftership import AfterShip
from connectors.csvfile import Config as CsvConfig
from connectors.csvfile import CsvFile
from connectors.easypost import EasyPost
from connectors.erpnext import ERPNext, ERPNextConfig
from connectors.odoo import Odoo, OdooConfig
from connectors.sdk.base import Page, ReadContext
from connectors.sdk.conformance import ConformanceAdapter, ConnectorConformance, Mode
from connectors.sdk.errors import CheckFailed, VendorError
from connectors.shopify import Shopify, ShopifyConfig
from connectors.woocommerce import WooCommerce, WooCommerceConfig
from tests.fakes import FakeShop
from tests.fakes.acme import AcmeServer
from tests.fakes.aftership import FakeAfterShip
from tests.fakes.easypost import FakeEasyPost
from tests.fakes.erpnext import TIME_ZONE, FakeFrappe, customer_doc, sales_invoice_doc, sales_order_doc
from tests.fakes.odoo import API_KEY as ODOO_KEY
from tests.fakes.odoo import DATABASE as ODOO_DATABASE
from tests.fakes.odoo import LOGIN as ODOO_LOGIN
from tests.fakes.odoo import FakeOdoo
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


class ERPNextAdapter(ConformanceAdapter):
    """ERPNext's fake site (tests/fakes/erpnext.py) in its own time zone (Asia/Kolkata):
    the kit's UTC times are written as the site's naive wall times, as Frappe keeps them.
    The site serves at most ``page_size`` rows whatever the connector asks (a proxy's
    limit): the connector's keyset paging must not take a short page for the last."""

    connector = ERPNext
    stream = "customers"
    doctype: ClassVar[str] = "Customer"

    def start(self) -> None:
        self.site = FakeFrappe()
        self.site.max_page_length = self.page_size
        self.site.start()
        self.count = 0

    def stop(self) -> None:
        self.site.stop()

    def config(self) -> ERPNextConfig:
        return ERPNextConfig(base_url=self.site.url, api_key=self.site.key, api_secret=self.site.secret,
                             webhook_secret=SECRET)

    @staticmethod
    def site_time(updated_at: str) -> datetime:
        return datetime.fromisoformat(updated_at).astimezone(ZoneInfo(TIME_ZONE)).replace(
            tzinfo=None)

    def document(self, name: str) -> dict[str, Any]:
        return customer_doc(name)

    def seed(self, updated_at: Sequence[str]) -> list[str]:
        names = []
        for at in updated_at:
            self.count += 1
            name = f"{self.doctype} {self.count:05d}"  # names sort in seeding order: the tie-break
            self.site.put(self.document(name), self.site_time(at))
            names.append(name)
        return names

    def update(self, external_id: str, updated_at: str) -> None:
        self.site.touch(self.doctype, external_id, self.site_time(updated_at))

    def fail_next(self, count: int, status: int, headers: dict[str, str] | None = None) -> None:
        self.site.fail_next(count, status, headers)

    def clear_faults(self) -> None:
        self.site.clear_faults()

    def webhook(self, external_id: str, *, forged: bool = False) -> tuple[dict[str, str], bytes]:
        """The documented body, ``{"doctype", "name", "modified"}``: a hint the connector
        confirms by reading the document again (the kit checks the record it parses to)."""
        modified = self.site.docs[self.doctype][external_id]["modified"]
        return self.site.webhook(self.doctype, external_id, "forged-secret" if forged else SECRET, modified=modified)


class ERPNextInvoices(ERPNextAdapter):
    stream = "sales_invoices"
    doctype = "Sales Invoice"

    def start(self) -> None:
        super().start()
        self.site.put(customer_doc("Acme GmbH"), datetime(2024, 1, 1))

    def document(self, name: str) -> dict[str, Any]:
        return sales_invoice_doc(name, "Acme GmbH")


class ERPNextOrders(ERPNextAdapter):
    """Sales Orders: each page's child tables (the items) are read in one listing per page,
    so a page boundary, a tie on ``modified`` or a resume must not lose or repeat an order."""

    stream = "sales_orders"
    doctype = "Sales Order"

    def start(self) -> None:
        super().start()
        self.site.put(customer_doc("Acme GmbH"), datetime(2024, 1, 1))

    def document(self, name: str) -> dict[str, Any]:
        return sales_order_doc(name, "Acme GmbH")


class KitOdoo(Odoo):
    """Odoo with the kit's page size: Odoo returns ``limit`` rows unless fewer remain, so
    the connector ends a window on a short page; the kit's capped fake would look like
    the end with the production size (200), so the streams ask for the kit's size."""

    streams = tuple(type(s.__name__, (s,), {"page_size": ConformanceAdapter.page_size}) for s in Odoo.streams)


class OdooPartners(ConformanceAdapter):
    """Odoo's fake (JSON-2, an Odoo 19) capped at ``page_size`` rows a page; Odoo sends no
    signed webhooks (``webhooks = False``: the kit verifies every delivery is refused)."""

    connector = KitOdoo
    stream = "partners"
    api: ClassVar[str] = "json2"

    def start(self) -> None:
        self.fake = FakeOdoo(self.api)
        self.fake.max_page_size = self.page_size
        self.fake.start()
        self.count = 0

    def stop(self) -> None:
        self.fake.stop()

    def config(self) -> OdooConfig:
        return OdooConfig(base_url=self.fake.url, database=ODOO_DATABASE, api_key=ODOO_KEY,
                          username=ODOO_LOGIN if self.api == "jsonrpc" else None)

    def add(self, write_date: str) -> int:
        self.count += 1
        return self.fake.add_company(f"Company {self.count:05d}", write_date=write_date)

    def seed(self, updated_at: Sequence[str]) -> list[str]:
        return [str(self.add(at)) for at in updated_at]  # ids ascend: the tie-break on id

    def update(self, external_id: str, updated_at: str) -> None:
        self.fake.touch(self.model, int(external_id), write_date=updated_at)

    model: ClassVar[str] = "res.partner"

    def fail_next(self, count: int, status: int, headers: dict[str, str] | None = None) -> None:
        self.fake.fail_next(count, status, headers)

    def clear_faults(self) -> None:
        self.fake.clear_faults()


class OdooInvoices(OdooPartners):
    stream = "invoices"
    model = "account.move"
    api = "jsonrpc"  # an Odoo 17, over execute_kw

    def start(self) -> None:
        super().start()
        self.partner = self.fake.add_company("Billed GmbH", write_date="2024-01-01T00:00:00Z")

    def add(self, write_date: str) -> int:
        return self.fake.add_invoice(self.partner, 100.0, write_date=write_date)


class OdooOrders(OdooPartners):
    """``sale.order`` with its lines (read in one batch per page), over JSON-2."""

    stream = "sale_orders"
    model = "sale.order"

    def start(self) -> None:
        super().start()
        self.partner = self.fake.add_company("Buyer GmbH", write_date="2024-01-01T00:00:00Z")

    def add(self, write_date: str) -> int:
        return self.fake.add_order(self.partner, write_date=write_date)


class TestShopifyCustomersConformance(ConnectorConformance):
    adapter = ShopifyCustomers


class TestShopifyOrdersConformance(ConnectorConformance):
    adapter = ShopifyOrders


class TestWooCommerceCustomersConformance(ConnectorConformance):
    adapter = WooCustomers


class TestWooCommerceOrdersConformance(ConnectorConformance):
    adapter = WooOrders


class TestERPNextCustomersConformance(ConnectorConformance):
    adapter = ERPNextAdapter


class TestERPNextInvoicesConformance(ConnectorConformance):
    adapter = ERPNextInvoices


class TestERPNextOrdersConformance(ConnectorConformance):
    adapter = ERPNextOrders


class TestOdooOrdersConformance(ConnectorConformance):
    adapter = OdooOrders


class TestOdooPartnersConformance(ConnectorConformance):
    adapter = OdooPartners


class TestOdooInvoicesConformance(ConnectorConformance):
    adapter = OdooInvoices


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
class UnversionedHooks(ERPNextAdapter):
    """Frappe webhooks set up with the body ``{"doctype", "name"}`` alone."""

    def webhook(self, external_id: str, *, forged: bool = False) -> tuple[dict[str, str], bytes]:
        return self.site.webhook(self.doctype, external_id, "forged-secret" if forged else SECRET)


class HintShopify(Shopify):
    """Claims its deliveries are hints, but falls back on the body when the shop is down."""

    webhook_hints = True


class TrustingERPNext(ERPNext):
    """Claims its deliveries carry their records, but writes nothing while the site is down."""

    webhook_hints = False


def test_the_kit_fails_webhooks_whose_deliveries_of_a_changed_record_look_like_replays():
    # the body's digest is the delivery id: without `modified` every delivery of a document
    # is the same one, and the intake drops later changes as duplicates (docs/connectors.md)
    assert "must not pass for a replay" in kit_failure(UnversionedHooks, "test_webhooks")


def test_the_kit_holds_a_connector_to_where_it_says_webhook_records_come_from():
    adapter = type("A", (ShopifyCustomers,), {"connector": HintShopify})
    assert "must write nothing and say why" in kit_failure(adapter, "test_webhooks")
    adapter = type("A", (ERPNextAdapter,), {"connector": TrustingERPNext})
    assert "declares webhook_hints = False" in kit_failure(adapter, "test_webhooks")
