"""Which hosts a URL a tenant types may point at: not our own network (SSRF).

Connectors' vendor URLs (connectors/sdk/net.py, which adds the connect-time check after
DNS) and outbound webhook endpoints (crm/webhooks/endpoints.py) share these rules.
Outside local development a URL must not reach loopback, private (RFC 1918), link-local
(the metadata service 169.254.169.254), CGNAT (100.64.0.0/10), multicast, IPv6 ULA or
IPv4-inside-IPv6 addresses. A host is refused when it is such a literal in any spelling
``inet_aton`` (and so ``getaddrinfo``) accepts: ``2130706433``, ``0177.0.0.1``,
``0x7f.1`` and ``127.1`` are all 127.0.0.1.

Local development talks to fakes on 127.0.0.1: ``RAPPORT_LOCAL_DEV=1`` lifts the check.
``rapport dev`` and the test stack set it; a deployment never does.
"""

from __future__ import annotations

import ipaddress
import os
import re

LOCAL_DEV_ENV = "RAPPORT_LOCAL_DEV"
CGNAT = ipaddress.ip_network("100.64.0.0/10")
ULA = ipaddress.ip_network("fc00::/7")
# a host made only of numbers (decimal, octal with a leading 0, hex with 0x), 1 to 4 of
# them: what inet_aton reads as an IPv4 address rather than a name
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)


class BlockedAddress(ValueError):
    """The host is, or resolves to, an address a URL must not reach."""


def local_dev() -> bool:
    return os.environ.get(LOCAL_DEV_ENV) == "1"


def refused(address: str) -> str | None:
    """Why ``address`` (an IP literal) is refused, or None if it is a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None or ip.sixtofour is not None or ip.teredo is not None:
            return "an IPv4 address inside IPv6"
        if ip in ULA:
            return "a private (ULA) address"
    elif ip in CGNAT:
        return "a carrier-grade NAT address"
    for attr, why in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_private", "a private address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "an unspecified address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(ip, attr):
            return why
    return None


class _NotAnAddress(ValueError):
    pass


def _inet_aton(host: str) -> str:
    """``host`` read as ``inet_aton`` reads it (1-4 parts, each decimal, octal or hex; the
    last fills the remaining bytes), as a dotted quad; _NotAnAddress if out of range."""
    parts = []
    for part in host.lower().split("."):
        if part.startswith("0x"):
            parts.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if not set(part) <= set("01234567"):
                raise _NotAnAddress(host)
            parts.append(int(part, 8))
        else:
            parts.append(int(part))
    *head, last = parts
    if any(p > 255 for p in head) or last >= 1 << (8 * (4 - len(head))):
        raise _NotAnAddress(host)
    value = last
    for n, p in enumerate(head):
        value |= p << (8 * (3 - n))
    return str(ipaddress.IPv4Address(value))


def literal(host: str) -> str | None:
    """The host as an IP literal (canonical form), or None if it is a name. Numeric
    spellings count: ``0x7f.1`` is ``127.0.0.1``."""
    name = host.strip("[]").rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    if _NUMERIC_HOST.match(name):
        try:
            return _inet_aton(name)
        except _NotAnAddress:
            return None
    return None


def check_host(host: str) -> None:
    """Save-time check: a literal address (in any spelling), or ``localhost``, that a URL
    must not point at. A numeric host that is no address at all is refused too."""
    if local_dev():
        return
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        raise BlockedAddress("points at this machine (localhost)")
    address = literal(name)
    if address is None and _NUMERIC_HOST.match(name):
        raise BlockedAddress("is a number that is not a valid address")
    why = refused(address) if address else None
    if why:
        raise BlockedAddress(f"is {why}")
