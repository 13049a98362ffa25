"""`distilq.stack`'s ports: a listening port is drawn from below the kernel's ephemeral range, so that no outgoing
connection is handed it between the draw and a slow starter's bind."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from distilq import stack
from distilq.stack import free_port, listening_ports


def test_a_free_port_is_below_the_ephemeral_range_and_bindable() -> None:
    low, high = listening_ports()
    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if ranges.exists():  # Linux: the kernel's own range, whatever this machine sets it to
        assert high < int(ranges.read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(low <= port <= high for port in ports)
    assert len(ports) > 1  # drawn, not one fixed port
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nothing listens there


def test_a_taken_port_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A range of one port: handed out while nothing listens there; once something does, the kernel's choice."""
    port = free_port()
    monkeypatch.setattr(stack, "listening_ports", lambda: (port, port))
    assert stack.free_port() == port
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        other = stack.free_port()
    assert other != port and other > 0


def test_a_process_listening_on_a_port_is_told_from_one_that_is_not() -> None:
    with socket.socket() as server, socket.socket() as other:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        other.bind(("127.0.0.1", 0))  # bound, not listening
        if stack.listens_on(os.getpid(), port) is None:
            pytest.skip("no /proc here: the launcher cannot tell, and relies on /healthz alone")
        assert stack.listens_on(os.getpid(), port) is True
        assert stack.listens_on(os.getpid(), other.getsockname()[1]) is False
        assert stack.listens_on(os.getppid(), port) is False  # another process: not its socket
        assert stack.port_in_use(port) and stack.port_in_use(other.getsockname()[1])
    assert not stack.port_in_use(port)
