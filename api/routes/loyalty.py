"""/v1/loyalty and /v1/customers/{id}/loyalty: the program, balances, the ledger,
redemptions and manual adjustments."""

from __future__ import annotations

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "loyalty"
READ, WRITE, ADMIN = "customers:read", "customers:write", "admin"
_CUSTOMER = "/v1/customers/{customer_id}/loyalty"


@endpoint(
    bp,
    "/v1/loyalty/program",
    "GET",
    operation_id="getLoyaltyProgram",
    tag=TAG,
    scope=ADMIN,
    summary="The tenant's loyalty program (404 until one is PUT)",
    responses={200: "Program"},
    errors=(404,),
)
def get_program(req: Request) -> Result:
    from crm.loyalty import service

    program = service.get_program(req.ctx)
    return Result(200, program, {"ETag": f'"{program.version}"'})


@endpoint(
    bp,
    "/v1/loyalty/program",
    "PUT",
    operation_id="putLoyaltyProgram",
    tag=TAG,
    scope=ADMIN,
    summary="Create or replace the program; If-Match with a stale ETag gets 412",
    body="ProgramFields",
    responses={200: "Program", 201: "Program"},
    errors=(409, 412),
    if_match=True,
)
def put_program(req: Request) -> Result:
    from crm.loyalty import service

    program, created = service.put_program(req.ctx, req.body, req.if_match)
    return Result(201 if created else 200, program, {"ETag": f'"{program.version}"'})


@endpoint(
    bp,
    _CUSTOMER,
    "GET",
    operation_id="getCustomerLoyalty",
    tag=TAG,
    scope=READ,
    summary="Points available and pending, tier and progress to the next tier, lots",
    responses={200: "Loyalty"},
    errors=(404,),
)
def get_loyalty(req: Request) -> Result:
    from crm.loyalty import service

    return Result(200, service.view(req.ctx, req.params["customer_id"]))


@endpoint(
    bp,
    _CUSTOMER + "/ledger",
    "GET",
    operation_id="listLoyaltyLedger",
    tag=TAG,
    scope=READ,
    summary="The customer's ledger entries, newest first",
    query="PageQuery",
    responses={200: "LedgerPage"},
    errors=(404,),
)
def list_ledger(req: Request) -> Result:
    from crm.loyalty import service

    page = service.ledger(req.ctx, req.params["customer_id"], limit=req.query.limit, cursor=req.query.cursor)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    _CUSTOMER + "/redemptions",
    "POST",
    operation_id="redeemPoints",
    tag=TAG,
    scope=WRITE,
    summary="Spend points atomically (Idempotency-Key required); 422 names the available balance",
    body="RedemptionCreate",
    responses={201: "PointsChange", 200: "PointsChange"},
    errors=(404, 410, 409),
    idempotent="required",
)
def redeem(req: Request) -> Result:
    from crm.loyalty import service

    change, created = service.redeem(req.ctx, req.params["customer_id"], req.body, req.headers["idempotency-key"])
    return Result(201 if created else 200, change)


@endpoint(
    bp,
    _CUSTOMER + "/adjustments",
    "POST",
    operation_id="adjustPoints",
    tag=TAG,
    scope=ADMIN,
    summary="Credit or debit points by hand, with a reason",
    body="AdjustmentCreate",
    responses={201: "PointsChange", 200: "PointsChange"},
    errors=(404, 410, 409),
    idempotent=True,
)
def adjust(req: Request) -> Result:
    from crm.loyalty import service

    change, created = service.adjust(req.ctx, req.params["customer_id"], req.body, req.headers.get("idempotency-key"))
    return Result(201 if created else 200, change)
