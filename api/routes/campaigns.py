"""/v1/email/campaigns: email campaigns to a segment (crm/email/campaigns.py;
docs/campaigns.md): CRUD, send (now or at ``send_at``), pause, resume, cancel, and
progress and stats on GET."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "campaigns"
READ, WRITE = "email:read", "email:write"
_ID = "/v1/email/campaigns/{campaign_id}"
_409 = "409 invalid_transition when the campaign's state does not allow it"


def _etag(campaign: object) -> dict[str, str]:
    return {"ETag": f'"{campaign.version}"'}  # type: ignore[attr-defined]


@endpoint(
    bp,
    "/v1/email/campaigns",
    "POST",
    operation_id="createCampaign",
    tag=TAG,
    scope=WRITE,
    summary="Create a draft campaign: a template sent to a segment's members. 422 names a template, "
    "segment or sender that does not exist or is not verified",
    body="CampaignCreate",
    responses={201: "Campaign"},
    idempotent=True,
)
def create_campaign(req: Request) -> Result:
    from crm.email import campaigns

    campaign = campaigns.create(req.ctx, req.body)
    return Result(201, campaign, {**_etag(campaign), "Location": f"/v1/email/campaigns/{campaign.id}"})


@endpoint(
    bp,
    "/v1/email/campaigns",
    "GET",
    operation_id="listCampaigns",
    tag=TAG,
    scope=READ,
    summary="The tenant's campaigns, oldest first",
    query="PageQuery",
    responses={200: "CampaignPage"},
)
def list_campaigns(req: Request) -> Result:
    from crm.email import campaigns

    page = campaigns.list_(req.ctx, req.query.cursor, req.query.limit)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    _ID,
    "GET",
    operation_id="getCampaign",
    tag=TAG,
    scope=READ,
    summary="A campaign: its state, progress (sent, total, rate, skipped, failed, deferred) and "
    "stats (delivered, bounced, complained, opened, clicked, unsubscribed); one DynamoDB GetItem",
    responses={200: "Campaign"},
    errors=(404,),
)
def get_campaign(req: Request) -> Result:
    from crm.email import campaigns

    campaign = campaigns.get(req.ctx, req.params["campaign_id"])
    return Result(200, campaign, _etag(campaign))


@endpoint(
    bp,
    _ID,
    "PATCH",
    operation_id="updateCampaign",
    tag=TAG,
    scope=WRITE,
    summary="Change a draft campaign; If-Match with a stale ETag gets 412; " + _409,
    body="CampaignPatch",
    responses={200: "Campaign"},
    errors=(404, 409, 412),
    if_match=True,
)
def update_campaign(req: Request) -> Result:
    from crm.email import campaigns

    campaign = campaigns.update(req.ctx, req.params["campaign_id"], req.body, req.if_match)
    return Result(200, campaign, _etag(campaign))


@endpoint(
    bp,
    _ID,
    "DELETE",
    operation_id="deleteCampaign",
    tag=TAG,
    scope=WRITE,
    summary="Delete a draft, sent or cancelled campaign (later SES events of its emails count nowhere); "
    "If-Match with a stale ETag gets 412; " + _409,
    responses={204: None},
    errors=(400, 404, 409, 412),
    if_match=True,
)
def delete_campaign(req: Request) -> Result:
    from crm.email import campaigns

    campaigns.delete(req.ctx, req.params["campaign_id"], req.if_match)
    return Result(204)


@endpoint(
    bp,
    _ID + "/send",
    "POST",
    operation_id="sendCampaign",
    tag=TAG,
    scope=WRITE,
    summary="Send a draft campaign now (sending) or at send_at (scheduled). 409 invalid_transition "
    "unless draft; 409 sender_not_verified or no_sender without a verified sender",
    body="CampaignSend",
    responses={200: "Campaign"},
    errors=(404, 409),
)
def send_campaign(req: Request) -> Result:
    from crm.email import campaigns

    campaign = campaigns.send(req.ctx, req.params["campaign_id"], req.body.send_at)
    return Result(200, campaign, _etag(campaign))


def _action(name: str, summary: str) -> Callable[..., Any]:
    def declare(handler):
        return endpoint(
            bp,
            _ID + f"/{name}",
            "POST",
            operation_id=f"{name}Campaign",
            tag=TAG,
            scope=WRITE,
            summary=summary + "; " + _409,
            responses={200: "Campaign"},
            errors=(404, 409),
        )(handler)

    return declare


def _act(req: Request, name: str) -> Result:
    from crm.email import campaigns

    campaign = getattr(campaigns, name)(req.ctx, req.params["campaign_id"])
    return Result(200, campaign, _etag(campaign))


@_action("pause", "Pause a sending campaign (batches in flight park; nothing is re-sent on resume)")
def pause_campaign(req: Request) -> Result:
    return _act(req, "pause")


@_action("resume", "Resume a paused campaign where it stopped")
def resume_campaign(req: Request) -> Result:
    return _act(req, "resume")


@_action("cancel", "Cancel a campaign that is not sent yet (final)")
def cancel_campaign(req: Request) -> Result:
    return _act(req, "cancel")
