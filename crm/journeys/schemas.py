"""A journey's definition (docs/journeys.md): what the journeys API will take, and what
the planner (crm/journeys/plan.py) runs.

Strict and closed (``extra="forbid"``): a typo in a key is a 422, not a silently
ignored step. Rules (``condition`` steps, exit rules) are the segment rule language
(crm/segments/rules.py), validated and normalized here; every error names the step
(``steps[2].rule.all[0]: unknown field ...``), which JSON Schema cannot say.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, field_validator, model_validator

from crm.customers.schemas import ATTRIBUTE_KEY, Tag
from crm.email.schemas_campaigns import SegmentId, SenderAddress, TemplateId
from crm.events import TYPES
from crm.segments import rules

JourneyName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Status = Literal["draft", "active", "paused", "archived"]
MAX_STEPS = 50
MAX_UPDATE_ITEMS = 20
CHECKOUT_STARTED = "checkout.started"
# what may end a run: the domain events (crm/events.py) and a started checkout
EXIT_EVENTS = frozenset(TYPES | {CHECKOUT_STARTED})
_EXIT_ENUM: list[JsonValue] = [*sorted(EXIT_EVENTS)]  # the OpenAPI's enum of exit.events
_TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
DURATION_DESCRIPTION = "an ISO 8601 duration such as PT1H, P3D or P1W (at most 100 years)"
RULE_DESCRIPTION = (
    'a segment rule: {"all": [...]} or {"any": [...]} groups of {"field", "op", "value"} '
    "conditions (docs/segments.md), evaluated on the customer's facts when the step runs"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _duration(value: str) -> str:
    try:
        return rules.canonical_duration(value)
    except rules.RuleError as exc:
        raise ValueError(exc.message.replace("value must be", "must be")) from None


# --- triggers ------------------------------------------------------------------------------


class CustomerCreatedTrigger(_Strict):
    """A welcome journey: one run per customer, ever (the occurrence is the customer)."""

    type: Literal["customer.created"]


class CheckoutStartedTrigger(_Strict):
    """Cart abandonment: a checkout (``POST /v1/checkouts``) with no order since. Each
    checkout id is one occurrence; an order placed at or after the checkout started ends
    its run, whenever the order arrives (an implicit exit event, order.placed)."""

    type: Literal["checkout.started"]
    wait: str = Field(
        default="PT1H", description="how long after the checkout started the first step runs; " + DURATION_DESCRIPTION
    )

    @field_validator("wait")
    @classmethod
    def _check_wait(cls, value: str) -> str:
        return _duration(value)


class BirthdayTrigger(_Strict):
    """Once a year per customer with a ``birth_date``, in the tenant's time zone; a
    29 February birthday is on 28 February in other years."""

    type: Literal["birthday"]
    days_before: int = Field(default=0, ge=0, le=60, description="start this many days before the birthday")
    hour: int = Field(default=9, ge=0, le=23, description="the local hour (tenant's time zone) the run starts at")


class SegmentEnteredTrigger(_Strict):
    """A customer entering a segment (each entry is an occurrence: leaving and entering
    again later is a new one), e.g. win-back on ``orders.last_at older_than P90D``."""

    type: Literal["segment.entered"]
    segment_id: SegmentId


class TierChangedTrigger(_Strict):
    """A customer's loyalty tier changing (each change is an occurrence)."""

    type: Literal["tier.changed"]
    to: str | None = Field(default=None, min_length=1, max_length=64, description="only changes to this tier")


class PointsExpiringTrigger(_Strict):
    """A points lot about to expire (each lot is an occurrence)."""

    type: Literal["points.expiring"]
    days_before: int = Field(
        default=7,
        ge=0,
        le=365,
        description="start this many days before the lot expires (at once if the warning comes later)",
    )


Trigger = Annotated[
    CustomerCreatedTrigger
    | CheckoutStartedTrigger
    | BirthdayTrigger
    | SegmentEnteredTrigger
    | TierChangedTrigger
    | PointsExpiringTrigger,
    Field(discriminator="type"),
]


# --- steps ---------------------------------------------------------------------------------


class WaitStep(_Strict):
    """Wait a duration, or until the next time of day in the tenant's time zone (exactly one)."""

    type: Literal["wait"]
    duration: str | None = Field(default=None, description=DURATION_DESCRIPTION)
    until: str | None = Field(
        default=None,
        json_schema_extra={"pattern": _TIME_OF_DAY.pattern},
        description='a local time of day "HH:MM" (24 h, tenant\'s time zone): the next one from now',
    )

    @field_validator("duration")
    @classmethod
    def _check_duration(cls, value: str | None) -> str | None:
        return None if value is None else _duration(value)

    @field_validator("until")
    @classmethod
    def _check_until(cls, value: str | None) -> str | None:
        if value is not None and not _TIME_OF_DAY.match(value):
            raise ValueError('must be a time of day "HH:MM" such as 09:30')
        return value

    @model_validator(mode="after")
    def _one(self) -> WaitStep:
        if (self.duration is None) == (self.until is None):
            raise ValueError('a wait has exactly one of "duration" and "until"')
        return self


Target = int | Literal["next", "exit"]


class ConditionStep(_Strict):
    """Branch on a segment rule. Targets are later steps only (a journey never loops
    back, so every run ends), ``"next"`` (the following step, or the end) or ``"exit"``."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    type: Literal["condition"]
    rule: dict[str, JsonValue] = Field(description=RULE_DESCRIPTION)
    then: Target = Field(default="next", description="where a customer the rule holds for goes")
    else_: Target = Field(default="exit", alias="else", description="where the others go")


class SendEmailStep(_Strict):
    """Send a saved template. Marketing or transactional follows the template's kind
    (marketing: consent, suppression and the frequency cap; transactional: suppression
    only)."""

    type: Literal["send_email"]
    template_id: TemplateId
    sender: SenderAddress | None = Field(default=None, description="absent: the tenant's default sender")


class UpdateStep(_Strict):
    """Change the customer's tags and attributes (``null`` removes an attribute)."""

    type: Literal["update"]
    add_tags: list[Tag] = Field(default_factory=list, max_length=MAX_UPDATE_ITEMS)
    remove_tags: list[Tag] = Field(default_factory=list, max_length=MAX_UPDATE_ITEMS)
    set_attributes: dict[str, JsonValue] = Field(default_factory=dict, max_length=MAX_UPDATE_ITEMS)

    @field_validator("set_attributes")
    @classmethod
    def _keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in value if not ATTRIBUTE_KEY.match(k)]
        if bad:
            raise ValueError(f'attribute name "{bad[0][:64]}" must match {ATTRIBUTE_KEY.pattern}')
        return value

    @model_validator(mode="after")
    def _something(self) -> UpdateStep:
        if not (self.add_tags or self.remove_tags or self.set_attributes):
            raise ValueError("an update changes something: add_tags, remove_tags or set_attributes")
        both = {t.lower() for t in self.add_tags} & {t.lower() for t in self.remove_tags}
        if both:
            raise ValueError(f'tag "{min(both)}" is both added and removed')
        return self


Step = Annotated[WaitStep | ConditionStep | SendEmailStep | UpdateStep, Field(discriminator="type")]


# --- exits, re-entry, the journey ------------------------------------------------------------


class Exit(_Strict):
    """What ends a run early. An exit event counts when it happened (``occurred_at``) at
    or after the run's trigger, whenever it arrives; a send not yet recorded is cancelled.
    The rule is checked on the customer's facts before every step that is due."""

    events: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="event types, e.g. order.placed",
        json_schema_extra={"items": {"type": "string", "enum": _EXIT_ENUM}},
    )
    rule: dict[str, JsonValue] | None = Field(default=None, description=RULE_DESCRIPTION)

    @field_validator("events")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for i, type_ in enumerate(value):
            if type_ not in EXIT_EVENTS:
                raise ValueError(
                    f'events[{i}]: unknown event type "{type_[:64]}" (one of {", ".join(sorted(EXIT_EVENTS))})'
                )
        return sorted(set(value))

    @field_validator("rule")
    @classmethod
    def _rule(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _parse_rule(value, "rule")


class ReentryNever(_Strict):
    """One run per customer, ever."""

    type: Literal["never"]


class ReentryAfter(_Strict):
    """A new occurrence starts a run only if the last run's trigger happened at least
    ``duration`` before this one's (event times, not arrival)."""

    type: Literal["after"]
    duration: str = Field(description=DURATION_DESCRIPTION)

    @field_validator("duration")
    @classmethod
    def _check_duration(cls, value: str) -> str:
        return _duration(value)


class ReentryAlways(_Strict):
    """Every new occurrence starts a run (a replayed occurrence never does)."""

    type: Literal["always"]


Reentry = Annotated[ReentryNever | ReentryAfter | ReentryAlways, Field(discriminator="type")]


def _parse_rule(value: Any, path: str) -> dict[str, Any]:
    try:
        return rules.parse(value)
    except rules.RuleError as exc:
        where = path + exc.path.removeprefix("rule")
        raise ValueError(f"{where}: {exc.message}") from None


class JourneyDefinition(_Strict):
    """A journey as its author writes it."""

    name: JourneyName
    status: Status = Field(default="draft", description="only an active journey starts runs; paused holds them")
    trigger: Trigger
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS, description="run in order, from the first")
    exit: Exit = Field(default_factory=Exit)
    reentry: Reentry = Field(default_factory=lambda: ReentryAlways(type="always"))

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[Any]) -> list[Any]:
        """Rules parsed, and targets only forward (an error names the step)."""
        n = len(steps)
        for i, step in enumerate(steps):
            if not isinstance(step, ConditionStep):
                continue
            step.rule = _parse_rule(step.rule, f"steps[{i}].rule")
            for name, target in (("then", step.then), ("else", step.else_)):
                if isinstance(target, int) and not i < target < n:
                    later = f"{i + 1} to {n - 1}" if i + 1 < n else "none: it is the last step"
                    raise ValueError(
                        f'steps[{i}].{name}: {target} is not a later step ({later}); use "next" or "exit" '
                        "(a journey never loops back)"
                    )
        return steps

    def template_ids(self) -> set[str]:
        """Every template the journey sends (the handler reads their kinds: the cap)."""
        return {s.template_id for s in self.steps if isinstance(s, SendEmailStep)}
