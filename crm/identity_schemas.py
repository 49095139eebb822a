"""Models of identity resolution's settings and conflicts (crm/identity.py). They
validate the API's requests and generate the OpenAPI document (api/schemas.py
re-exports them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Rule = Literal["external_id", "email", "phone"]
ConflictStatus = Literal["open", "resolved"]
DEFAULT_ORDER: tuple[Rule, ...] = ("external_id", "email", "phone")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentitySettingsFields(_Strict):
    """PUT /v1/identity/settings. ``order``: the rules that may link a source's record to
    an existing customer, first match wins. ``external_id`` cannot be left out: a
    source's record must keep landing on the customer it created or was linked to."""

    order: list[Rule] = Field(
        min_length=1,
        max_length=3,
        json_schema_extra={"contains": {"const": "external_id"}, "uniqueItems": True},
        description='e.g. ["external_id", "email", "phone"]; a rule left out never links',
    )

    @field_validator("order")
    @classmethod
    def _order(cls, value: list[str]) -> list[str]:
        dup = sorted({r for r in value if value.count(r) > 1})
        if dup:
            raise ValueError(f"each rule at most once; repeated: {', '.join(dup)}")
        if "external_id" not in value:
            raise ValueError("external_id cannot be disabled (it may be placed anywhere in the order)")
        return value


class IdentitySettings(BaseModel):
    order: list[Rule]
    updated_at: str | None = Field(default=None, description="null while the defaults apply")


class IdentityConflict(BaseModel):
    """A record identity resolution would not guess about; nothing was linked for it."""

    id: str
    status: ConflictStatus
    source: str
    external_id: str | None = None
    rule: Rule = Field(description="the rule whose match conflicted")
    reason: Literal["ambiguous_phone", "different_external_id", "matches_disagree", "email_taken"]
    candidate_customer_ids: list[str]
    email: str | None = None
    phone: str | None = None
    detected_at: str
    resolved_at: str | None = None
    resolved_by: str | None = Field(default=None, description="the API key that resolved it")
    note: str | None = None


class ConflictResolve(_Strict):
    note: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] | None = None
