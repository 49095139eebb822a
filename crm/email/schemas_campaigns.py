"""What the campaigns API takes and returns (crm/email/campaigns.py, api/routes/campaigns.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from crm.customers.schemas import Timestamp

CampaignName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
TemplateId = Annotated[str, StringConstraints(pattern=r"^tpl_[0-9A-HJKMNP-TV-Z]{26}$")]
SegmentId = Annotated[str, StringConstraints(pattern=r"^seg_[0-9A-HJKMNP-TV-Z]{26}$")]
# an address of a verified identity; looser than a customer's email, whose validator
# refuses reserved names such as the dev senders' ``hello@<tenant>.example.test``: SES
# (and the verified-sender check) decide
SenderAddress = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, max_length=254, pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$"
    ),
]
Status = Literal["draft", "scheduled", "sending", "paused", "sent", "cancelled"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CampaignCreate(_Strict):
    name: CampaignName
    template_id: TemplateId = Field(description="a template of the tenant (422 naming template_id otherwise)")
    segment_id: SegmentId = Field(description="the audience: the segment's members when the send starts")
    sender: SenderAddress | None = Field(
        default=None,
        description="a verified sender address (or an address of a verified domain); "
        "absent: the tenant's default sender (PUT /v1/email/settings)",
    )


class CampaignPatch(_Strict):
    """Only while draft. Fields given replace; ``sender: null`` goes back to the default."""

    name: CampaignName | None = None
    template_id: TemplateId | None = None
    segment_id: SegmentId | None = None
    sender: SenderAddress | None = None


class CampaignSend(_Strict):
    send_at: Timestamp | None = Field(
        default=None, description="when to start; absent or past: now (the campaign goes sending, else scheduled)"
    )


class CampaignProgress(BaseModel):
    total: int = Field(description="recipients enqueued so far (the segment's members as the send reads them)")
    sent: int
    skipped: int = Field(description="no consent, suppressed, unsubscribed, no address, erased")
    failed: int = Field(description="SES refused the message, or the template failed for the customer")
    deferred: int = Field(description="waiting for the customer's frequency cap (sent later, never dropped)")
    rate: float = Field(description="emails sent per second since the send started (time paused left out)")
    resolved: bool = Field(description="the whole audience was read and enqueued")


class CampaignStats(BaseModel):
    delivered: int
    bounced: int
    complained: int
    opened: int
    clicked: int
    unsubscribed: int


class Campaign(BaseModel):
    id: str
    name: str
    template_id: str
    segment_id: str
    sender: str | None = Field(description="null: the tenant's default sender")
    status: Status
    paused_reason: str | None = Field(
        default=None,
        description="plan_limit: the sender paused it, the month's email allowance being used up "
        "(resume once the plan allows more or the month turns); null when paused by a user",
    )
    send_at: str | None = None
    progress: CampaignProgress
    stats: CampaignStats
    created_at: str
    updated_at: str
    started_at: str | None = None
    finished_at: str | None = None
    version: int


class CampaignPage(BaseModel):
    data: list[Campaign]
    next_cursor: str | None
