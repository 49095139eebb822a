"""/v1/invoices: invoices as the ERP connectors wrote them (read-only over the API).

Financial records, like orders: ``orders:read``."""

from __future__ import annotations

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "invoices"
READ = "orders:read"


@endpoint(
    bp,
    "/v1/invoices",
    "GET",
    operation_id="listInvoices",
    tag=TAG,
    scope=READ,
    summary="Invoices, newest issued first; an account's or a customer's, by status (1 Query each)",
    query="InvoiceListQuery",
    responses={200: "InvoicePage"},
)
def list_invoices(req: Request) -> Result:
    from crm.accounts import invoices

    q = req.query
    page = invoices.list_invoices(req.ctx, limit=q.limit, cursor=q.cursor, account_id=q.account_id,
                                  customer_id=q.customer_id, status=q.status)  # fmt: skip
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    "/v1/invoices/{invoice_id}",
    "GET",
    operation_id="getInvoice",
    tag=TAG,
    scope=READ,
    summary="Get an invoice (outstanding amount, status, lines, its account and customer)",
    responses={200: "Invoice"},
    errors=(404,),
)
def get_invoice(req: Request) -> Result:
    from crm.accounts import invoices

    return Result(200, invoices.get(req.ctx, req.params["invoice_id"]))
