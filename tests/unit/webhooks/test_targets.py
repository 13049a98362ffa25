"""The SSRF guard over its corpus: non-public addresses in every spelling, other schemes, credentials."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from webhooks.targets import LookupFailed, UnsafeTarget, check_target

REFUSED = [
    "http://127.0.0.1/hook", "http://127.1/", "http://2130706433/", "http://0x7f000001/", "http://0x7f.1/",
    "http://0177.0.0.1/", "http://localhost:8080/", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/", "http://169.254.169.254/latest/meta-data", "http://100.64.0.1/", "http://10.0.0.1/",
    "http://172.16.5.4/", "http://192.168.1.1/", "http://0.0.0.0/", "http://0/", "http://224.0.0.1/",
    "http://[ff02::1]/", "http://[fe80::1]/", "http://[fc00::1]/", "http://240.0.0.1/", "http://255.255.255.255/",
    "ftp://example.com/", "file:///etc/passwd", "gopher://127.0.0.1/", "http:///no-host", "http://user:pw@8.8.8.8/",
    "http://nonexistent.invalid/",
    # IPv4 inside IPv6: 6to4 of 127.0.0.1 and of 10.0.0.1, NAT64, IPv4-compatible; and port 0.
    "http://[2002:7f00:1::]/", "http://[2002:a00:1::1]/", "http://[64:ff9b::7f00:1]/", "http://[64:ff9b:1::a00:1]/",
    "http://[::127.0.0.1]/", "http://8.8.8.8:0/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(url, allow_private=False)


def test_a_public_address_is_allowed_and_kept_for_the_connection() -> None:
    target = check_target("https://8.8.8.8:8443/hooks/in?x=1", allow_private=False)
    assert (target.scheme, target.host, target.port, target.path, target.addresses) == (
        "https", "8.8.8.8", 8443, "/hooks/in?x=1", ["8.8.8.8"])


def test_allow_private_lifts_the_address_rule_but_not_the_scheme_rule() -> None:
    assert check_target("http://localhost:9000/x", allow_private=True).addresses[0] in ("127.0.0.1", "::1")
    assert check_target("http://127.1/", allow_private=True).addresses == ["127.0.0.1"]
    with pytest.raises(UnsafeTarget):
        check_target("ftp://localhost/", allow_private=True)


def _lookup_failing_with(errno: int) -> Callable[..., list[Any]]:
    def lookup(*_args: Any, **_kwargs: Any) -> list[Any]:
        raise socket.gaierror(errno, "the resolver's answer")

    return lookup


def test_a_passing_lookup_failure_is_not_a_refusal() -> None:
    with pytest.raises(LookupFailed):
        check_target("https://hooks.example.com/", allow_private=False, lookup=_lookup_failing_with(socket.EAI_AGAIN))
    with pytest.raises(UnsafeTarget):
        check_target("https://hooks.example.com/", allow_private=False, lookup=_lookup_failing_with(socket.EAI_NONAME))


def test_a_name_is_allowed_only_when_every_address_it_resolves_to_is_public() -> None:
    def lookup(*_args: Any, **_kwargs: Any) -> list[Any]:
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, 443, 0, 0))
                for address in ("2606:4700::1111", "2002:7f00:1::")]

    with pytest.raises(UnsafeTarget, match="2002:7f00:1::"):
        check_target("https://hooks.example.com/", allow_private=False, lookup=lookup)
