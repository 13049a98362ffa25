"""Where a webhook may be sent (the SSRF guard), checked at submission and again at every delivery.

Only http and https; the host is resolved and every address must be global: loopback, private, link-local
(169.254.169.254), shared/CGNAT, multicast, reserved, unspecified and IPv4-mapped IPv6 are refused, including
odd IPv4 spellings (`127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1`), which `inet_aton` reads as the resolver
would.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: getaddrinfo's answers that mean "try again later", not "no such name".
_PASSING_LOOKUP_ERRORS = {socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", socket.EAI_AGAIN)}


class UnsafeTarget(ValueError):
    """The URL may not be used as a webhook."""


class LookupFailed(OSError):
    """The host could not be looked up just now (a passing DNS failure): neither allowed nor refused."""


#: IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (RFC 6052, RFC 8215) and the deprecated
#: IPv4-compatible form. 6to4 (2002::/16) carries it in bits 16-48; IPv4-mapped (::ffff:0:0/96) has its property.
_EMBEDDING_IPV4 = [ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"),
                   ipaddress.IPv6Network("::/96")]


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


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _EMBEDDING_IPV4):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_global(address: IPAddress) -> bool:
    """Public, and so is any IPv4 address it wraps (mapped, 6to4, NAT64, IPv4-compatible)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and not is_global(embedded):
            return False
    return address.is_global and not address.is_multicast and not address.is_reserved


def check_target(url: str, allow_private: bool, resolve: bool = True,
                 lookup: Callable[..., list[Any]] = socket.getaddrinfo) -> Target:
    """The parsed target with the addresses it may be contacted at; raises UnsafeTarget, or LookupFailed when the
    name could not be looked up just now. `lookup` is `socket.getaddrinfo`'s shape."""
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
    if port == 0:
        raise UnsafeTarget("has port 0, which nothing listens on")
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
        infos = lookup(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        if error.errno in _PASSING_LOOKUP_ERRORS:
            raise LookupFailed(f"host {host} could not be looked up just now ({error.strerror})") from None
        raise UnsafeTarget(f"host {host} does not resolve") from None
    except OSError as error:
        raise LookupFailed(f"host {host} could not be looked up just now ({error})") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not allow_private:
        refused = [a for a in addresses if not is_global(ipaddress.ip_address(a))]
        if refused:
            raise UnsafeTarget(f"host {host} resolves to a non-public address ({refused[0]})")
    return Target(parts.scheme, host, port, path, addresses)
