"""What the email templates, settings and senders API takes and returns
(crm/email/{templates,settings,senders}.py, api/routes/email.py; docs/email.md)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

MAX_SOURCE = 100_000  # characters of a template's HTML or text as given
TemplateKind = Literal["marketing", "transactional"]
TemplateName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Subject = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Source = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SOURCE)]
# SES identities are ASCII (an internationalized domain in its xn-- form)
DOMAIN_PATTERN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
# the local part: letters, digits and _ + - (dot-separated); no characters that need quoting in a URL
LOCAL_PATTERN = r"[A-Za-z0-9_+-]{1,64}(?:\.[A-Za-z0-9_+-]{1,64})*"
IDENTITY_PATTERN = rf"^(?:{LOCAL_PATTERN}@)?{DOMAIN_PATTERN}$"
ADDRESS_PATTERN = rf"^{LOCAL_PATTERN}@{DOMAIN_PATTERN}$"
Identity = Annotated[str, StringConstraints(max_length=254, pattern=IDENTITY_PATTERN)]
Address = Annotated[str, StringConstraints(max_length=254, pattern=ADDRESS_PATTERN)]
TEMPLATE_ID_PATTERN = r"^tpl_[0-9A-HJKMNP-TV-Z]{26}$"
TEXT_DESCRIPTION = "the plain-text part; left out (or null): derived from the HTML"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TemplateCreate(_Strict):
    name: TemplateName
    kind: TemplateKind = Field(
        description="marketing (needs {{ unsubscribe_url }} and {{ postal_address }}, consent "
        "and the frequency cap apply) or transactional"
    )
    subject: Subject = Field(description="a jinja2 template (no HTML)")
    html: Source = Field(description="a jinja2 template; <style> rules are inlined at save")
    text: Source | None = Field(default=None, description=TEXT_DESCRIPTION)


class TemplatePatch(_Strict):
    """Fields given replace; ``text: null`` derives the text part from the HTML again."""

    name: TemplateName | None = None
    kind: TemplateKind | None = None
    subject: Subject | None = None
    html: Source | None = None
    text: Source | None = Field(default=None, description=TEXT_DESCRIPTION)


class Template(BaseModel):
    id: str
    name: str
    kind: TemplateKind
    subject: str
    html: str = Field(description="as sent: the CSS inlined")
    source_html: str = Field(description="the HTML as given")
    text: str
    text_derived: bool = Field(description="true when the text part was derived from the HTML")
    created_at: str
    updated_at: str
    version: int


class TemplatePage(BaseModel):
    data: list[Template]
    next_cursor: str | None


class TemplatePreviewRequest(_Strict):
    customer_id: Annotated[str, StringConstraints(pattern=r"^cus_[0-9A-Z]{26}$")]


class TemplatePreview(BaseModel):
    subject: str
    html: str
    text: str
    warnings: list[str] = Field(description="e.g. no postal address set yet (a placeholder stands in)")


ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+\-]{0,30}(/[A-Za-z0-9_+\-]{1,30}){0,2}$"


def _check_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not re.fullmatch(ZONE_PATTERN, value):
        raise ValueError("must be an IANA time zone such as Europe/Paris or America/New_York")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Paris)") from None
    return value


class EmailSettingsPut(_Strict):
    """The whole settings: a field left out is cleared."""

    postal_address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] | None = (
        Field(default=None, description="printed in every marketing email ({{ postal_address }})")
    )
    default_sender: Address | None = Field(
        default=None, description="an address of a verified sender identity (the address, or its domain, verified)"
    )
    from_name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100,
                                                pattern=r"^[^\x00-\x1f\x7f]+$")] | None = None  # fmt: skip
    reply_to: Address | None = None
    time_zone: Annotated[str, StringConstraints(pattern=ZONE_PATTERN), AfterValidator(_check_zone)] | None = Field(
        default=None,
        description="an IANA time zone such as Europe/Paris: journeys' birthdays and wait-until times are "
        "read in it (absent: UTC)",
    )


class EmailSettings(BaseModel):
    postal_address: str | None
    default_sender: str | None
    from_name: str | None
    reply_to: str | None
    ses_tenant: str | None = Field(description="the SES tenant the tenant sends as (null where not used)")
    time_zone: str = Field(default="UTC", description="journeys' time zone (birthdays, wait until)")
    updated_at: str | None
    version: int


class SenderCreate(_Strict):
    identity: Identity = Field(description="a domain (example.com) or an address (news@example.com)")


class DkimRecord(BaseModel):
    name: str = Field(description="<token>._domainkey.<domain>")
    type: Literal["CNAME"]
    value: str = Field(description="<token>.dkim.amazonses.com")


class Sender(BaseModel):
    identity: str
    type: Literal["domain", "address"]
    status: Literal["pending", "verified", "failed"]
    dkim: list[DkimRecord] = Field(description="the CNAME records to publish in the domain's DNS (a domain)")
    created_at: str
    updated_at: str


class SenderList(BaseModel):
    data: list[Sender]
