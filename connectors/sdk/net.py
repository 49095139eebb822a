"""Where a connector may connect: vendor URLs must not reach our own network (SSRF).

A tenant types a vendor URL; the worker then calls it with the tenant's credentials and
shows what came back. Outside local development that URL must not reach loopback,
private (RFC 1918), link-local (the metadata service 169.254.169.254), CGNAT
(100.64.0.0/10), IPv6 ULA or IPv4-mapped addresses. The host is checked when the config
is saved (a literal address) and again at connect time, after DNS, on every address the
name resolves to; the connection then goes to the address that was checked (no second
lookup a rebinding DNS server could answer differently).

Local development talks to fakes on 127.0.0.1: ``RAPPORT_LOCAL_DEV=1`` lifts the check.
``rapport dev`` and the test stack set it; a deployment never does.
"""

from __future__ import annotations

import ipaddress
import os
import socket

LOCAL_DEV_ENV = "RAPPORT_LOCAL_DEV"
CGNAT = ipaddress.ip_network("100.64.0.0/10")
ULA = ipaddress.ip_network("fc00::/7")


class BlockedAddress(ValueError):
    """The host is, or resolves to, an address a vendor cannot be at."""


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


def literal(host: str) -> str | None:
    """The host as an IP literal, or None if it is a name."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def check_host(host: str) -> None:
    """Save-time check: a literal address, or ``localhost``, that a vendor cannot be at."""
    if local_dev():
        return
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        raise BlockedAddress("points at this machine (localhost)")
    address = literal(name)
    why = refused(address) if address else None
    if why:
        raise BlockedAddress(f"is {why}, not a vendor's")


def resolve(host: str, port: int) -> str:
    """Connect-time check: resolve ``host``, refuse it if any address is not public, and
    return the (checked) address to connect to."""
    address = literal(host)
    if address is not None:
        infos = [address]
    else:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise OSError(f"cannot resolve {host}: {exc}") from None
        infos = list(dict.fromkeys(str(info[4][0]) for info in found))
        if not infos:
            raise OSError(f"{host} resolves to no address")
    for a in infos:
        why = refused(a)
        if why:
            raise BlockedAddress(f"{host} resolves to {why}, not a vendor's")
    return infos[0]
