"""Connector discovery through the ``rapport.connectors`` entry-point group.

Built-in connectors register there too (pyproject.toml), so a partner's package
installed beside Rapport is found exactly like ours, without touching core.
"""
from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import Any

GROUP = "rapport.connectors"


@functools.lru_cache(maxsize=1)
def available() -> dict[str, Any]:
    """{name: Connector class} of every installed connector (loaded once per process)."""
    from connectors.sdk.base import Connector

    from crm.aws import logger

    found: dict[str, Any] = {}
    for ep in entry_points(group=GROUP):
        # one broken plugin must not take the others (or the API) down: it is logged and left out
        try:
            cls = ep.load()
        except Exception:  # noqa: BLE001
            logger().exception("connector entry point failed to load", extra={"entry_point": ep.value})
            continue
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            logger().error("entry point is not a Connector subclass", extra={"entry_point": ep.value})
            continue
        if cls.name in found and found[cls.name] is not cls:
            logger().error("two connectors share a name; the first is kept",
                           extra={"name": cls.name, "entry_point": ep.value})
            continue
        found[cls.name] = cls
    return dict(sorted(found.items()))


def get(name: str) -> Any | None:
    return available().get(name)
