"""/v1/accounts: B2B accounts (companies), their contacts and their 360 view.

Accounts are customer data: ``customers:read`` / ``customers:write``, like customers. The
360's orders and invoices are financial records: shown with ``orders:read`` (null
without it), as the customer 360 shows orders."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "accounts"
READ, WRITE = "customers:read", "customers:write"


def _etag(account: Any) -> dict[str, str]:
    return {"ETag": f'"{account.version}"'}


@endpoint(
    bp,
    "/v1/accounts",
    "POST",
    operation_id="createAccount",
    tag=TAG,
    scope=WRITE,
    summary="Create an account (a company); 409 names the account that holds a duplicate external id",
    body="AccountCreate",
    responses={201: "Account"},
    errors=(409,),
    idempotent=True,
)
def create_account(req: Request) -> Result:
    from crm.accounts import service

    account = service.create(req.ctx, req.body)
    return Result(201, account, {**_etag(account), "Location": f"/v1/accounts/{account.id}"})


@endpoint(
    bp,
    "/v1/accounts",
    "GET",
    operation_id="listAccounts",
    tag=TAG,
    scope=READ,
    summary="List accounts by id, or search them by a prefix of the name (?name=)",
    query="AccountListQuery",
    responses={200: "AccountPage"},
)
def list_accounts(req: Request) -> Result:
    from crm.accounts import service

    q = req.query
    page = service.list_accounts(req.ctx, limit=q.limit, cursor=q.cursor, name=q.name)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    "/v1/accounts/lookup",
    "GET",
    operation_id="lookupAccounts",
    tag=TAG,
    scope=READ,
    summary="Exact lookup by source + external_id (the account's id in that system)",
    query="AccountLookupQuery",
    responses={200: "AccountList"},
)
def lookup_accounts(req: Request) -> Result:
    from crm.accounts import service

    return Result(200, {"data": service.lookup(req.ctx, req.query.source, req.query.external_id)})


@endpoint(
    bp,
    "/v1/accounts/{account_id}",
    "GET",
    operation_id="getAccount",
    tag=TAG,
    scope=READ,
    summary="Get an account with its balance (what open invoices still owe, per currency)",
    responses={200: "Account"},
    errors=(404,),
)
def get_account(req: Request) -> Result:
    from crm.accounts import service

    account = service.get(req.ctx, req.params["account_id"])
    return Result(200, account, _etag(account))


@endpoint(
    bp,
    "/v1/accounts/{account_id}",
    "PATCH",
    operation_id="updateAccount",
    tag=TAG,
    scope=WRITE,
    summary="Update an account; If-Match with a stale ETag gets 412",
    body="AccountPatch",
    responses={200: "Account"},
    errors=(404, 409, 412),
    if_match=True,
)
def update_account(req: Request) -> Result:
    from crm.accounts import service

    account = service.update(req.ctx, req.params["account_id"], req.body, req.if_match)
    return Result(200, account, _etag(account))


@endpoint(
    bp,
    "/v1/accounts/{account_id}/contacts",
    "GET",
    operation_id="listAccountContacts",
    tag=TAG,
    scope=READ,
    summary="The account's contacts (customers with a role), newest customer first",
    query="PageQuery",
    responses={200: "ContactPage"},
    errors=(404,),
)
def list_contacts(req: Request) -> Result:
    from crm.accounts import contacts

    q = req.query
    page = contacts.list_contacts(req.ctx, req.params["account_id"], limit=q.limit, cursor=q.cursor)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    "/v1/accounts/{account_id}/contacts",
    "POST",
    operation_id="linkAccountContact",
    tag=TAG,
    scope=WRITE,
    summary="Make a customer a contact of the account with a role (201; 200 when it was one: the role "
    "is updated); a contact of another account is a 409",
    body="ContactLink",
    responses={201: "Contact", 200: "Contact"},
    errors=(404, 409, 410),
    idempotent=True,
)
def link_contact(req: Request) -> Result:
    from crm.accounts import contacts

    done = contacts.link(req.ctx, req.params["account_id"], req.body.customer_id, req.body.role)
    return Result(201 if done.status == "created" else 200, done.contact)


@endpoint(
    bp,
    "/v1/accounts/{account_id}/contacts/{customer_id}",
    "DELETE",
    operation_id="unlinkAccountContact",
    tag=TAG,
    scope=WRITE,
    summary="Remove a customer from the account's contacts (the customer stays)",
    responses={204: None},
    errors=(404,),
)
def unlink_contact(req: Request) -> Result:
    from crm.accounts import contacts

    contacts.unlink(req.ctx, req.params["account_id"], req.params["customer_id"])
    return Result(204)


@endpoint(
    bp,
    "/v1/accounts/{account_id}/360",
    "GET",
    operation_id="getAccount360",
    tag=TAG,
    scope=READ,
    summary="Profile, balance, contacts, 10 latest orders and invoices (null without orders:read) "
    "in 2 DynamoDB requests",
    responses={200: "Account360"},
    errors=(404,),
)
def account_360(req: Request) -> Result:
    from crm.accounts.view import view_360

    view = view_360(req.ctx, req.params["account_id"])
    if not req.ctx.allows("orders:read"):
        view = view.model_copy(update={"recent_orders": None, "recent_invoices": None})
    return Result(200, view)
