"""Acme Contacts: an example partner connector, outside Rapport's code base.

The vendor API (served in tests by tests/fakes/acme.py) lists contacts changed since a
time with cursor pagination: ``GET /v2/contacts?changed_since=&cursor=&limit=`` answers
``{"contacts": [...], "next": "<cursor>"|null}``; auth is ``Authorization: Bearer``.
Everything else (retries, throttling, checkpoints, identity, writes) is the SDK's.
"""
from __future__ import annotations

from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, HttpUrl

from connectors.sdk import (
    CheckFailed,
    Client,
    Connector,
    CustomerRecord,
    Page,
    ReadContext,
    Rejected,
    Secret,
    Stream,
    VendorError,
    Window,
)
from connectors.sdk.paging import cursor_next


class AcmeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: HttpUrl
    api_token: Secret


def _record(c: dict[str, Any]) -> CustomerRecord | Rejected:
    if not c.get("id") or not c.get("changed_at"):
        return Rejected(str(c.get("id")) if c.get("id") else None, "a contact without id or changed_at")
    profile: dict[str, Any] = {}
    if c.get("email"):
        profile["email"] = c["email"]
    name = {k: v for k, v in (("given", c.get("first")), ("family", c.get("last"))) if v}
    if name:
        profile["name"] = name
    if c.get("labels"):
        profile["tags"] = list(c["labels"])
    return CustomerRecord(str(c["id"]), c["changed_at"], profile)


class Contacts(Stream):
    name = "customers"

    def read(self, rc: ReadContext, state: dict[str, Any]) -> Iterator[Page]:
        window = Window(state, backfill=rc.mode == "backfill")
        cursor = window.page
        while True:
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            elif window.since:
                params["changed_since"] = window.since
            body, _ = rc.client.get_json("/v2/contacts", params=params)
            records = window.fresh([_record(c) for c in body.get("contacts", [])])
            cursor = cursor_next(body, "next")
            yield Page(records, window.advance(records, cursor))
            if cursor is None:
                return


class Acme(Connector):
    name = "acme"
    kind = "ecommerce"
    version = "0.3.0"
    title = "Acme Contacts (partner example)"
    Config = AcmeConfig
    streams = (Contacts,)

    def client(self, config: AcmeConfig) -> Client:
        return Client(str(config.base_url).rstrip("/"), headers={"Authorization": f"Bearer {config.api_token}"})

    def check(self, config: AcmeConfig, client: Client) -> None:
        try:
            client.get("/v2/me")
        except VendorError as exc:
            raise CheckFailed(f"Acme refused the token: {exc}") from exc
