"""Pagination helpers for the three styles vendors use."""

from __future__ import annotations

import re
from typing import Any

import httpx

_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?([^";]+)"?')


def link_next(response: httpx.Response) -> str | None:
    """The ``rel="next"`` URL of an RFC 8288 ``Link`` header (Shopify's page_info, GitHub...)."""
    for url, rel in _LINK.findall(response.headers.get("link", "")):
        if "next" in rel.split():
            return url
    return None


def page_numbers(response: httpx.Response, page: int, *, total_pages_header: str = "x-wp-totalpages") -> int | None:
    """The next page number when the vendor counts pages (WooCommerce's ``X-WP-TotalPages``)."""
    try:
        total = int(response.headers.get(total_pages_header, "0"))
    except ValueError:
        total = 0
    return page + 1 if page < total else None


def cursor_next(body: dict[str, Any], *path: str) -> str | None:
    """A next-cursor field in the body (``{"meta": {"next_cursor": ...}}``): ``cursor_next(body, "meta", "next_cursor")``."""
    node: Any = body
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node or None
