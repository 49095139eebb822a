"""Field helpers every connector needs: vendor times to Rapport's UTC strings, optional
profile fields kept only when Rapport's validators would accept them (a bad phone is
dropped, not allowed to reject the whole customer), base URLs and header lookup."""

from __future__ import annotations

import functools
import html
import re
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any
from urllib.parse import urlsplit

import idna

from common import clock, normalize


def utc(value: Any) -> str | None:
    """An ISO-8601 time with an offset, or without one (read as UTC: WooCommerce's
    ``*_gmt`` fields), as ``clock.iso``; None for empty values. Raises ValueError."""
    if value in (None, ""):
        return None
    dt = datetime.fromisoformat(str(value).strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return clock.iso(dt)


def text(value: Any, limit: int = 200, *, unescape: bool = False) -> str | None:
    """A stripped non-empty string cut to ``limit`` characters, else None."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    out = str(value).strip()
    if unescape:
        out = html.unescape(out).strip()
    if not out.isprintable():  # the usual text has no control character: no per-character pass
        out = "".join(ch for ch in out if ch >= " " or ch == "\t")
    return out[:limit] or None


def order_number(value: Any) -> str | None:
    """The shop's order number as the buyer knows it (``#1001``), or None: cut to 64
    characters, and None when nothing is left but ``#`` (Rapport would refuse it, and a
    number is never worth refusing the order for)."""
    out = text(value, 64)
    return out if out and out.lstrip("#").strip() else None


def email(value: Any) -> str | None:
    raw = text(value, 254)
    return None if raw is None else _email(raw)


@functools.lru_cache(maxsize=8192)  # a buyer's email comes back with each of their orders
def _email(raw: str) -> str | None:
    try:
        return normalize.email(raw)
    except ValueError:
        return None


def phone(value: Any, country: str | None = None) -> str | None:
    """E.164 when the number is valid: as given (with its country code), else read as a
    national number of ``country`` (the address's ISO-2 code); None when neither works."""
    raw = text(value, 32)
    return None if raw is None else _phone(raw, country.upper() if country else None)


@functools.lru_cache(maxsize=8192)
def _phone(raw: str, country: str | None) -> str | None:
    try:
        return normalize.phone(raw)
    except ValueError:
        pass
    if not country:
        return None
    import phonenumbers

    try:
        parsed = phonenumbers.parse(raw, country)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def country(value: Any) -> str | None:
    raw = text(value, 2)
    return raw.upper() if raw and len(raw) == 2 and raw.isalpha() and raw.isascii() else None


def address(
    *,
    line1: Any,
    line2: Any = None,
    city: Any = None,
    region: Any = None,
    postal_code: Any = None,
    country_code: Any = None,
    label: str | None = None,
) -> dict | None:
    """A Rapport address, or None when it lacks what Rapport requires (a first line and
    an ISO-2 country)."""
    first, iso = text(line1), country(country_code)
    if not first or not iso:
        return None
    out: dict[str, Any] = {"line1": first, "country": iso}
    for key, value, limit in (
        ("line2", line2, 200),
        ("city", city, 200),
        ("region", region, 200),
        ("postal_code", postal_code, 20),
    ):
        v = text(value, limit)
        if v:
            out[key] = v
    if label:
        out["label"] = label[:40]
    return out


def name(given: Any, family: Any) -> dict | None:
    out = {k: v for k, v in (("given", text(given)), ("family", text(family))) if v}
    return out or None


def _loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ip_address(host or "").is_loopback
    except ValueError:
        return False


HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _host(host: str, field: str) -> None:
    """A host name httpx can connect to: IDNA-encodable (``….myshopify.com``, the README's
    placeholder, is not), labels of letters, digits and hyphens, or an IP literal."""
    if ip_address_or_none(host) is not None:
        return
    try:
        ascii_host = host if host.isascii() else idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise ValueError(
            f"{field} has a host name that is not valid (IDNA): replace the placeholder with the real address"
        ) from None
    labels = ascii_host.rstrip(".").split(".")
    if not all(HOST_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{field} has a host name that is not valid: use letters, digits, "
            "hyphens and dots, e.g. https://shop.example.com"
        )


def ip_address_or_none(host: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return None


def base_url(value: str, field: str) -> str:
    """An https base URL (plain http only on loopback, for local fakes), no trailing slash,
    no query or fragment; its host must be valid and, outside local development, not an
    address of our own network (connectors/sdk/net.py)."""
    from connectors.sdk import net

    url = value.strip().rstrip("/")
    if not url.isprintable() or any(ch.isspace() for ch in url):
        raise ValueError(f"{field} must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise ValueError(f"{field} must be an absolute URL such as https://shop.example.com") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(f"{field} must be an absolute URL such as https://shop.example.com")
    if parts.scheme == "http" and not (_loopback(host) and net.local_dev()):
        raise ValueError(f"{field} must use https: the credentials must not travel in clear")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{field} must not carry a query, a fragment or credentials")
    _host(host, field)
    try:
        net.check_host(host)
    except net.BlockedAddress as exc:
        raise ValueError(f"{field} {exc}: a vendor's URL must be a public address") from None
    return url


def header(headers: Any, name: str) -> str | None:
    """Case-insensitive header lookup (HTTP header names are; API gateways lower-case them)."""
    if headers is None:
        return None
    wanted = name.lower()
    for key, value in dict(headers).items():
        if str(key).lower() == wanted:
            return value
    return None
