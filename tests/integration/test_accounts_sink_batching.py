"""The sink writes an ERP page in a few DynamoDB requests (docs/performance.md, "Accounts"):
reads batched per page, the records' items packed into transactions of up to 100 items
with each account's SUMMARY once per transaction, nothing written for records that did
not change; and concurrent writers of one account's invoices still leave its balance
exact (a cancelled transaction is written again record by record)."""
from __future__ import annotations

import threading

from connectors import sink
from connectors.sdk.base import AccountRecord, CustomerRecord, InvoiceRecord, OrderLine, OrderRecord
from tests.dynamo_calls import dynamodb_calls

AT = "2026-03-01T10:00:00Z"
LATER = "2026-03-02T10:00:00Z"


def write(tenant, records) -> tuple[dict, dict]:
    with dynamodb_calls() as calls:
        out = sink.write(tenant.ctx, "erpnext", "test", records)
    assert out.counts["rejected"] == 0, out.rejected
    return out.counts, dict(calls)


def invoice(n: int, account: str, at: str = AT, outstanding: int = 1000, status: str = "open") -> InvoiceRecord:
    return InvoiceRecord(f"INV-{n}", at, f"ACC-SINV-{n:05d}", "EUR", f"2026-02-{1 + n % 28:02d}T00:00:00Z", 1000,
                         outstanding, status=status, account=account, due_at="2026-04-30T00:00:00Z",
                         paid_at=at if status == "paid" else None)


def balance(tenant, xid: str) -> dict:
    found = tenant.http.get("/v1/accounts/lookup", params={"source": "erpnext", "external_id": xid}).json()["data"]
    return {"balance": found[0]["balance"], "open_invoices": found[0]["open_invoices"]}


def test_a_page_of_accounts_is_one_transaction_and_unchanged_ones_write_nothing(tenant):
    page = [AccountRecord(f"C-{n}", AT, {"name": f"Company {n}", "payment_terms": "Net 30"}) for n in range(50)]
    counts, calls = write(tenant, page)
    assert counts["created"] == 50
    # 1 BatchGetItem (guards) + 1 TransactWriteItems: 50 profiles and their guards
    assert calls == {"BatchGetItem": 1, "TransactWriteItems": 1}, calls
    counts, calls = write(tenant, page)
    assert counts["unchanged"] == 50
    assert calls == {"BatchGetItem": 2}, calls  # the guards, the profiles: no write
    counts, calls = write(tenant, [AccountRecord(f"C-{n}", LATER, {"name": f"Company {n} GmbH"}) for n in range(50)])
    assert counts["updated"] == 50 and calls == {"BatchGetItem": 2, "TransactWriteItems": 1}, calls


def test_a_page_of_invoices_updates_each_accounts_summary_once_per_transaction(tenant):
    page = [invoice(n, f"B-{n % 4}") for n in range(100)]  # 4 stub accounts, 25 invoices each
    counts, calls = write(tenant, page)
    assert counts["created"] == 100
    # stubs: 1 BatchGetItem + 1 TransactWriteItems; invoices: 2 BatchGetItem (guards; summaries)
    # + 100 x (guard, home, account's copy) and 4 summaries in 4 TransactWriteItems
    assert calls == {"BatchGetItem": 3, "TransactWriteItems": 5}, calls
    assert balance(tenant, "B-0") == {"balance": {"EUR": 25000}, "open_invoices": 25}
    counts, calls = write(tenant, page)  # read again: nothing changed
    assert counts["unchanged"] == 100
    # account guards; invoice guards; 100 homes (summaries are read only for a change)
    assert calls == {"BatchGetItem": 3}, calls
    paid = [invoice(n, f"B-{n % 4}", LATER, 0, "paid") for n in range(0, 100, 2)]
    counts, calls = write(tenant, paid + [invoice(n, f"B-{n % 4}", "2026-02-01T00:00:00Z", 7) for n in range(1, 9, 2)])
    assert counts["updated"] == 50 and counts["unchanged"] == 4  # older versions change nothing
    # account guards; invoice guards; homes; 4 summaries; 50 x (home, copy) + 4 summaries in 2 transactions
    assert calls == {"BatchGetItem": 4, "TransactWriteItems": 2}, calls
    assert balance(tenant, "B-0") == {"balance": {}, "open_invoices": 0}  # B-0, B-2: every other invoice paid
    assert balance(tenant, "B-1") == {"balance": {"EUR": 25000}, "open_invoices": 25}


def test_contacts_and_company_orders_are_linked_in_bulk(tenant):
    people = [CustomerRecord(f"P-{n}", AT, {"email": f"p{n}@bulk.example"}, account=f"D-{n % 3}", role="Buyer")
              for n in range(30)]
    counts, calls = write(tenant, people)
    assert counts["created"] == 30
    contacts_tx = calls["TransactWriteItems"]
    counts, again = write(tenant, people)
    assert counts["unchanged"] == 30 and "TransactWriteItems" not in again, again
    assert sum(again.values()) <= 6, again
    # beyond what the customers' own writes cost: 1 TransactWriteItems for the 3 stub accounts
    # and 1 for the 30 links (profile + contact item each, a check of each account)
    customers_only = [CustomerRecord(f"Q-{n}", AT, {"email": f"q{n}@bulk.example"}) for n in range(30)]
    _, plain = write(tenant, customers_only)
    assert contacts_tx - plain["TransactWriteItems"] == 2, (calls, plain)
    line = [OrderLine("sku-1", "Beans", 1, 1000)]
    orders = [OrderRecord(f"SO-{n}", AT, "web", "EUR", AT, line, 1000, account=f"D-{n % 3}") for n in range(60)]
    counts, calls = write(tenant, orders)
    assert counts["created"] == 60
    # account guards; orders; 3 summaries; 60 orders + 3 summaries in 1 TransactWriteItems
    assert calls == {"BatchGetItem": 3, "TransactWriteItems": 1}, calls
    counts, calls = write(tenant, orders)
    assert counts["unchanged"] == 60 and calls == {"BatchGetItem": 2}, calls


def test_concurrent_writers_of_one_accounts_invoices_leave_its_balance_exact(tenant):
    write(tenant, [AccountRecord("E-1", AT, {"name": "Contended AG"})])
    pages = [[invoice(1000 + w * 100 + n, "E-1", outstanding=100 + n) for n in range(40)] for w in range(3)]
    pages.append(pages[0])  # the same page twice at once: counted once
    errors: list[BaseException] = []

    def run(page) -> None:
        try:
            out = sink.write(tenant.ctx, "erpnext", "test", page)
            assert out.counts["rejected"] == 0, out.rejected
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in pages]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert balance(tenant, "E-1") == {"balance": {"EUR": 3 * sum(100 + n for n in range(40))}, "open_invoices": 120}
