"""The agent's TOML config (``--config PATH``, default ``./rapport-agent.toml``), validated
by pydantic models that refuse unknown keys. A bad config is a :class:`ConfigError` whose
message names the key (``sources.0.customers.owner.email: ...``). docs/agent.md has a full
example."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

DEFAULT_PATH = "rapport-agent.toml"
KEY_ENV = "RAPPORT_AGENT_KEY"

Rule = Literal["cloud", "local", "latest"]

# the Rapport customer fields an agent may map (contract: "customer fields")
CUSTOMER_PATHS = ("email", "phone", "name.given", "name.family", "birth_date", "gender", "locale", "tags")
ATTRIBUTE_PATH = re.compile(r"^attributes\.[A-Za-z_][A-Za-z0-9_]{0,63}$")

# the OrderRecord fields an orders mapping may name (columns of the orders table)
ORDER_FIELDS = (
    "customer",  # the local customer key of the buyer (its external id, with the source's prefix)
    "email",  # a guest's email when there is no customer
    "currency",
    "channel",
    "placed_at",
    "total",
    "lines",  # a JSON list of {sku, name, quantity, unit_price[, category]}; else one line from total
    "discount",
    "shipping",
    "tax",
    "number",
    "paid_at",
    "fulfilled_at",
    "cancelled_at",
    "cancel_reason",
)
CHANNELS = ("web", "mobile", "tv", "store", "marketplace")
SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


class ConfigError(Exception):
    """The config is missing, unreadable or wrong; the message names the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ident(value: str) -> str:
    if not IDENT.match(value):
        raise ValueError(f"{value!r} is not a table or column name (letters, digits, _; schema.table allowed)")
    return value


Ident = Annotated[str, Field(min_length=1, max_length=128)]


class Api(_Model):
    url: str
    key: SecretStr | None = None  # or the environment's RAPPORT_AGENT_KEY
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    retries: int = Field(default=5, ge=0, le=20)  # per request, for 429/5xx/network
    backoff_seconds: float = Field(default=0.5, ge=0, le=60)  # the first retry's delay; doubles, with jitter

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        url = value.strip().rstrip("/")
        if not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", url):
            raise ValueError("must be an http(s) URL such as https://api.rapport.example")
        return url


class Agent(_Model):
    state: str = "rapport-agent-state.sqlite"
    source: str | None = None  # must equal the agent's registered source (GET /v1/agents/me)
    poll_seconds: float = Field(default=30.0, gt=0, le=3600)
    offline_max_seconds: float = Field(default=300.0, gt=0, le=86_400)  # the longest sleep while offline
    batch_size: int = Field(default=100, ge=1, le=100)


class Customers(_Model):
    table: Ident | None = None  # sql sources only
    key: Ident
    updated_at: Ident | None = None  # sql sources only
    fields: dict[str, Ident] = Field(min_length=1)
    owner: dict[str, Rule] = {}
    default_owner: Rule = "latest"
    insert: bool = False  # insert cloud-created customers as local rows (sql sources)

    @field_validator("fields")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        for path, column in value.items():
            if path not in CUSTOMER_PATHS and not ATTRIBUTE_PATH.match(path):
                raise ValueError(
                    f"{path!r} is not a Rapport customer field: use one of {', '.join(CUSTOMER_PATHS)} "
                    "or attributes.<key>"
                )
            _ident(column)
        return value

    @field_validator("table", "key", "updated_at")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else _ident(value)

    @model_validator(mode="after")
    def _owners(self) -> Customers:
        unknown = sorted(set(self.owner) - set(self.fields))
        if unknown:
            raise ValueError(f"owner names fields that are not mapped in fields: {', '.join(unknown)}")
        return self

    def rule(self, path: str) -> Rule:
        return self.owner.get(path, self.default_owner)


class Orders(_Model):
    table: Ident | None = None
    key: Ident
    updated_at: Ident | None = None
    fields: dict[str, Ident] = Field(min_length=1)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")  # when no currency column
    channel: str = "store"  # when no channel column

    @field_validator("fields")
    @classmethod
    def _known(cls, value: dict[str, str]) -> dict[str, str]:
        for name, column in value.items():
            if name not in ORDER_FIELDS:
                raise ValueError(f"{name!r} is not an order field: use one of {', '.join(ORDER_FIELDS)}")
            _ident(column)
        for required in ("placed_at", "total"):
            if required not in value:
                raise ValueError(f"must map {required!r}")
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if value not in CHANNELS:
            raise ValueError(f"must be one of {', '.join(CHANNELS)}")
        return value

    @model_validator(mode="after")
    def _currency(self) -> Orders:
        if "currency" not in self.fields and self.currency is None:
            raise ValueError("map a 'currency' column in fields or set currency = \"EUR\" (ISO 4217)")
        return self


class Source(_Model):
    kind: Literal["sql", "csv"]
    name: str | None = None  # for status and logs; default sql-1, csv-2...
    prefix: str = Field(default="", max_length=32)  # put before each key to make its external id
    dsn: str | None = None  # sql: sqlite:///path or postgresql://user@host/db
    folder: str | None = None  # csv: the drop folder
    customers: Customers | None = None
    orders: Orders | None = None

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @model_validator(mode="after")
    def _shape(self) -> Source:
        if self.customers is None and self.orders is None:
            raise ValueError("map customers or orders (or both)")
        if self.kind == "sql":
            if not self.dsn:
                raise ValueError("a sql source needs dsn")
            if self.folder:
                raise ValueError("folder is for csv sources")
            for section in ("customers", "orders"):
                mapping = getattr(self, section)
                if mapping is not None and (not mapping.table or not mapping.updated_at):
                    raise ValueError(f"{section} of a sql source needs table and updated_at")
        else:
            if not self.folder:
                raise ValueError("a csv source needs folder")
            if self.dsn:
                raise ValueError("dsn is for sql sources")
            if self.customers is not None and self.customers.insert:
                raise ValueError("customers.insert is for sql sources (a drop folder is up only)")
        return self


class Config(_Model):
    api: Api
    agent: Agent = Agent()
    sources: list[Source] = Field(min_length=1)

    @model_validator(mode="after")
    def _sources(self) -> Config:
        names = [s.name for s in self.sources if s.name]
        if len(names) != len(set(names)):
            raise ValueError("two sources have the same name")
        prefixes = [s.prefix for s in self.sources]
        if len(prefixes) != len(set(prefixes)):
            raise ValueError(
                'each source needs its own prefix (e.g. prefix = "pos-"): the external ids of all '
                "sources share the agent's one source"
            )
        if sum(1 for s in self.sources if s.customers is not None and s.customers.insert) > 1:
            raise ValueError("at most one source may insert cloud customers (customers.insert)")
        return self

    def source_name(self, index: int) -> str:
        source = self.sources[index]
        return source.name or f"{source.kind}-{index + 1}"

    def api_key(self) -> str:
        key = self.api.key.get_secret_value() if self.api.key else os.environ.get(KEY_ENV, "")
        if not key:
            raise ConfigError(f"api.key: set it in the config or in the environment as {KEY_ENV}")
        return key

    def state_path(self, base: Path) -> Path:
        path = Path(self.agent.state).expanduser()
        return path if path.is_absolute() else base / path


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "missing"
            lines.append(f"{_loc(err['loc'])}: {msg.removeprefix('Value error, ')}")
        raise ConfigError("the config is not valid:\n  " + "\n  ".join(lines)) from None


def load(path: str | Path) -> Config:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no config at {file}: write one with `rapport-agent init`") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from None
    return parse(data)


EXAMPLE = """\
# rapport-agent configuration (docs/agent.md)

[api]
url = "https://api.rapport.example"
# the agent key from POST /v1/agents (shown once); or set RAPPORT_AGENT_KEY instead
key = "rpk_..."

[agent]
state = "/var/lib/rapport-agent/state.sqlite"   # the outbox, bases, cursor and clock
poll_seconds = 30
# source = "pos"   # optional: must equal the source the agent was created with

[[sources]]
kind = "sql"
name = "pos"
dsn = "postgresql://rapport_agent@localhost/pos"   # or sqlite:////srv/pos/pos.sqlite

[sources.customers]
table = "customers"
key = "id"
updated_at = "updated_at"
fields = { "email" = "email", "phone" = "phone", "name.given" = "first_name", "name.family" = "last_name", \
"attributes.loyalty_card" = "card_no" }
owner = { "name.given" = "local", "name.family" = "local", "attributes.loyalty_card" = "local" }
default_owner = "latest"   # cloud | local | latest
insert = true              # customers created in Rapport become local rows

[sources.orders]
table = "sales"
key = "id"
updated_at = "updated_at"
fields = { "customer" = "customer_id", "placed_at" = "sold_at", "total" = "total_cents", "lines" = "lines_json" }
currency = "EUR"
channel = "store"
"""
