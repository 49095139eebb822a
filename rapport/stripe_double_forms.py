"""Stripe's form encoding, as the official library and curl send it: ``a[b][c]=v`` nests,
``a[0]=x&a[1]=y`` (the library) and ``a[]=x&a[]=y`` (curl) are arrays. The Stripe double
parses query strings and bodies with it, so its handlers read plain dicts and lists."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_PART = re.compile(r"\[([^\]]*)\]")


class FormError(ValueError):
    """A key the encoding cannot express (``a]b``, ``a[b``): 400 from the double."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Invalid parameter name: {key}")
        self.param = key


def _path(key: str) -> list[str]:
    head, bracket, rest = key.partition("[")
    if not bracket:
        if "]" in key:
            raise FormError(key)
        return [key]
    tail = "[" + rest
    parts = _PART.findall(tail)
    if not head or _PART.sub("", tail):
        raise FormError(key)
    return [head, *parts]


def _listify(node: Any) -> Any:
    """Dicts whose keys are all indices (or appended ``[]``) become lists, in index order."""
    if isinstance(node, dict):
        node = {k: _listify(v) for k, v in node.items()}
        if node and all(isinstance(k, int) for k in node):
            return [node[k] for k in sorted(node)]
        return {str(k): v for k, v in node.items()}
    return node


def parse(raw: str) -> dict[str, Any]:
    """A query string or an ``application/x-www-form-urlencoded`` body as nested dicts/lists.
    Values stay strings (Stripe's own parser types them per parameter)."""
    root: dict[Any, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        path = _path(key)
        node = root
        for i, part in enumerate(path):
            last = i == len(path) - 1
            name: Any = part
            if part == "":
                name = len(node)  # a[]: the next index
            elif part.isdigit() and i > 0:
                name = int(part)
            if last:
                node[name] = value
            else:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = node[name] = {}
                node = child
    return _listify(root)


def truthy(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "yes")
