"""Connector discovery through the ``rapport.connectors`` entry-point group.

Built-in connectors register there too (pyproject.toml), so a partner's package
installed beside Rapport is found exactly like ours, without touching core.
"""

from __future__ import annotations

import functools
import logging
from importlib.metadata import entry_points
from typing import Any

GROUP = "rapport.connectors"
# the standard library's logging: the SDK runs outside AWS too (Powertools formats it in Lambda)
_log = logging.getLogger("rapport.connectors")


def _load(ep: Any) -> Any | None:
    """The entry point's Connector class; None (logged) if it fails to load or is not
    one: one broken plugin must not take the others (or the API) down."""
    from connectors.sdk.base import Connector

    try:
        cls = ep.load()
    except Exception:  # noqa: BLE001
        _log.exception("connector entry point failed to load", extra={"entry_point": ep.value})
        return None
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        _log.error("entry point is not a Connector subclass", extra={"entry_point": ep.value})
        return None
    return cls


@functools.lru_cache(maxsize=1)
def available() -> dict[str, Any]:
    """{name: Connector class} of every installed connector (loaded once per process)."""
    found: dict[str, Any] = {}
    for ep in entry_points(group=GROUP):
        cls = _load(ep)
        if cls is None:
            continue
        if cls.name in found and found[cls.name] is not cls:
            _log.error(
                "two connectors share a name; the first is kept", extra={"name": cls.name, "entry_point": ep.value}
            )
            continue
        found[cls.name] = cls
    return dict(sorted(found.items()))


@functools.lru_cache(maxsize=64)
def get(name: str) -> Any | None:
    """One connector by name. Entry points are named after their connector, so only that
    one is imported (a webhook or a sync does not load every plugin at a cold start);
    otherwise every connector is loaded and searched, which also applies the rules above."""
    named = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if len(named) == 1:
        cls = _load(named[0])
        if cls is not None and cls.name == name:
            return cls
    return available().get(name)
