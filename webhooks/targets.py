"""Where a webhook may be sent (the SSRF guard), checked at submission and again at every delivery.

Only http and https; the host is resolved and every address must be global: loopback, private, link-local
(169.254.169.254), shared/CGNAT, multicast, reserved, unspecified and IPv4-mapped IPv6 are refused, including
odd IPv4 spellings (`127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1`), which `inet_aton` reads as the resolver
would.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTarget(ValueError):
    """The URL may not be used as a webhook."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written (for Host and TLS server name)
    port: int
    path: str  # path and query
    addresses: list[str]  # the checked addresses to connect to


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # Accepts the shorthand, decimal, hex and octal forms the resolver (and browsers) accept.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def is_global(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast and not address.is_reserved


def check_target(url: str, allow_private: bool, resolve: bool = True) -> Target:
    """The parsed target with the addresses it may be contacted at; raises UnsafeTarget."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeTarget(f"is not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("must be an http or https URL")
    host = parts.hostname
    if not host:
        raise UnsafeTarget("has no host")
    if parts.username or parts.password:
        raise UnsafeTarget("must not carry credentials")
    port = port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    literal = _literal_address(host)
    if literal is not None:
        if not allow_private and not is_global(literal):
            raise UnsafeTarget(f"points at a non-public address ({literal})")
        return Target(parts.scheme, host, port, path, [str(literal)])
    if not resolve:
        return Target(parts.scheme, host, port, path, [])
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise UnsafeTarget(f"host {host} does not resolve") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not allow_private:
        refused = [a for a in addresses if not is_global(ipaddress.ip_address(a))]
        if refused:
            raise UnsafeTarget(f"host {host} resolves to a non-public address ({refused[0]})")
    return Target(parts.scheme, host, port, path, addresses)
