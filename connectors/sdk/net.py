"""Where a connector may connect: vendor URLs must not reach our own network (SSRF).

A tenant types a vendor URL; the worker then calls it with the tenant's credentials and
shows what came back. Outside local development that URL must not reach loopback,
private (RFC 1918), link-local (the metadata service 169.254.169.254), CGNAT
(100.64.0.0/10), IPv6 ULA or IPv4-mapped addresses (the rules: common/net.py, in any
spelling of an address: ``0x7f.1`` is 127.0.0.1). The host is checked when the config
is saved (a literal address) and again at connect time, after DNS, on every address the
name resolves to; the connection then goes to the address that was checked (no second
lookup a rebinding DNS server could answer differently).

Local development talks to fakes on 127.0.0.1: ``RAPPORT_LOCAL_DEV=1`` lifts the check.
``rapport dev`` and the test stack set it; a deployment never does.
"""

from __future__ import annotations

import socket

# the address rules are common/net.py's (webhook endpoints share them); re-exported here,
# where connectors have always found them
from common.net import CGNAT, LOCAL_DEV_ENV, ULA, BlockedAddress, check_host, literal, local_dev, refused

__all__ = [
    "CGNAT",
    "LOCAL_DEV_ENV",
    "ULA",
    "BlockedAddress",
    "check_host",
    "literal",
    "local_dev",
    "refused",
    "resolve",
]


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
