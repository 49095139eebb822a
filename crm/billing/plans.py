"""The plan catalogue: what each plan sells (its Stripe price ``lookup_key``), allows
(limits) and includes (features). One JSON file, crm/billing/plans.json, which a
deployment replaces with ``RAPPORT_PLANS_FILE``; loaded once per container."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_FILE = Path(__file__).with_name("plans.json")
FREE = "free"
LimitName = Literal["customers", "connections", "emails_per_month", "requests_per_second"]
Feature = Literal["journeys", "hybrid_sync"]


class Limits(BaseModel):
    """``None``: unlimited (a metered plan bills the use instead)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    customers: int | None = Field(ge=0)
    connections: int | None = Field(ge=0)
    emails_per_month: int | None = Field(ge=0)
    requests_per_second: int = Field(ge=1)
    # email campaigns (crm/email/throttle.py, crm/email/sending.py): the tenant's send rate
    # and the frequency cap, hours between two marketing emails to one customer
    email_per_second: int = Field(default=1, ge=1)
    marketing_cap_hours: int = Field(default=16, ge=0)


class Metered(BaseModel):
    """Usage billed through a Stripe Billing Meter: ``unit_price`` (minor units) per ``per`` units."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    meter: str = Field(min_length=1, description="the meter's event_name")
    unit: Literal["customers"]
    per: int = Field(ge=1)
    unit_price: int = Field(ge=0)


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    lookup_key: str | None = Field(default=None, min_length=1, max_length=200)
    monthly_price: int = Field(ge=0, description="minor units of the catalogue's currency")
    limits: Limits
    features: tuple[Feature, ...] = ()
    metered: Metered | None = None

    def allows(self, feature: str) -> bool:
        return feature in self.features

    def limit(self, name: LimitName) -> int | None:
        return getattr(self.limits, name)


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    comment: str | None = Field(default=None, alias="_comment")
    currency: str = Field(pattern=r"^[a-z]{3}$")
    plans: tuple[Plan, ...] = Field(min_length=1)

    def model_post_init(self, _context: object) -> None:
        names = [p.name for p in self.plans]
        if FREE not in names:
            raise ValueError("the catalogue must have a 'free' plan (a new tenant starts on it)")
        if len(set(names)) != len(names):
            raise ValueError("plan names must be unique")
        keys = [p.lookup_key for p in self.plans if p.lookup_key]
        if len(set(keys)) != len(keys):
            raise ValueError("lookup keys must be unique")

    @functools.cached_property
    def by_name(self) -> dict[str, Plan]:
        """Name -> plan, built once: every request looks its plan up here."""
        return {p.name: p for p in self.plans}


@functools.lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    path = Path(os.environ.get("RAPPORT_PLANS_FILE") or DEFAULT_FILE)
    return Catalogue.model_validate(json.loads(path.read_text()))


def get(name: str | None) -> Plan:
    """A plan by name; an unknown or missing name (a plan dropped from the catalogue) is free."""
    plans = catalogue().by_name
    return plans.get(name or FREE, plans[FREE])


def by_lookup_key(lookup_key: str | None) -> Plan | None:
    return next((p for p in catalogue().plans if lookup_key and p.lookup_key == lookup_key), None)


def sold() -> tuple[Plan, ...]:
    """Plans a tenant can buy through Checkout (those with a Stripe price)."""
    return tuple(p for p in catalogue().plans if p.lookup_key)


def allowing(name: LimitName, needed: int, *, above: Plan) -> Plan | None:
    """The first sold plan after ``above`` in the catalogue (ordered from smallest to
    largest) whose ``name`` limit is at least ``needed``: what a 402 suggests."""
    order = [p.name for p in catalogue().plans]
    start = order.index(above.name) if above.name in order else 0
    fits = [p for p in sold() if order.index(p.name) > start and ((v := p.limit(name)) is None or v >= needed)]
    return fits[0] if fits else None
