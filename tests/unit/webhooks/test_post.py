"""One webhook attempt (`webhooks.sender.post`) against receivers on loopback sockets: the status is the answer, the
attempt ends at its deadline whatever the receiver does, the receiver's body is never read, and TLS is verified
against the URL's host while the connection goes to the checked address."""

from __future__ import annotations

import select
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from webhooks.sender import post
from webhooks.targets import Target

HEADERS = {"content-type": "application/json", "webhook-id": "msg_1"}


@contextmanager
def receiver(answer: Callable[[socket.socket, bytes], None],
             wrap: Callable[[socket.socket], socket.socket] = lambda conn: conn) -> Iterator[int]:
    """A server on a loopback port that accepts one connection, reads the request and hands it to `answer`."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            conn = wrap(conn)
            answer(conn, _request(conn))
        except OSError:
            pass  # the client went away (or refused the handshake): what some tests are about
        finally:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        thread.join(30)
        listener.close()


def _request(conn: socket.socket) -> bytes:
    """The whole request: its head, and as many bytes of body as its Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def _target(port: int, scheme: str = "http", host: str = "127.0.0.1") -> Target:
    return Target(scheme, host, port, "/hooks?x=1", ["127.0.0.1"])


def test_the_receivers_status_is_the_answer_and_the_request_is_sent_whole() -> None:
    requests: list[bytes] = []

    def answer(conn: socket.socket, request: bytes) -> None:
        requests.append(request)
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    with receiver(answer) as port:
        result = post(_target(port), HEADERS, '{"type": "job.completed"}', 5.0)
    assert (result.status, result.error) == (204, None)
    head, _, body = requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /hooks?x=1 HTTP/1.1") and f"Host: 127.0.0.1:{port}".encode() in head
    assert b"webhook-id: msg_1" in head and body == b'{"type": "job.completed"}'


def test_an_answer_sent_a_byte_at_a_time_is_cut_at_the_deadline() -> None:
    """Each byte comes within the socket's timeout: only the attempt's deadline ends it, before the receiver does."""
    sent_all = threading.Event()

    def answer(conn: socket.socket, request: bytes) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            conn.sendall(bytes([byte]))
            if select.select([conn], [], [], 0.2)[0]:  # the client closed its end: it reads no more
                return
        sent_all.set()

    with receiver(answer) as port:
        result = post(_target(port), HEADERS, "{}", 0.5)
    assert (result.status, result.error) == (None, "timed out after 0.5 s")
    assert not sent_all.is_set()


def test_the_receivers_body_is_never_read() -> None:
    """A 2xx with a body of a gigabyte: the attempt is delivered on the status; the receiver cannot send it all."""
    sent = [0]

    def answer(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
        chunk = b"x" * (1 << 20)
        while sent[0] < 1 << 30:
            conn.sendall(chunk)
            sent[0] += len(chunk)

    with receiver(answer) as port:
        result = post(_target(port), HEADERS, "{}", 5.0)
    assert (result.status, result.error) == (200, None)
    assert sent[0] < 1 << 30  # the sender closed the connection before the body was through


def test_tls_is_verified_against_the_urls_host_on_the_checked_address(tmp_path: Path) -> None:
    """A self-signed certificate is refused; the handshake named the URL's host (SNI), not the address dialled."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=hooks.example.com",
                    "-addext", "subjectAltName=DNS:hooks.example.com"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,func-returns-value]

    def answer(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    with receiver(answer, lambda conn: context.wrap_socket(conn, server_side=True)) as port:
        result = post(_target(port, "https", "hooks.example.com"), HEADERS, "{}", 5.0)
    assert result.status is None and result.error is not None and "CERTIFICATE_VERIFY_FAILED" in result.error
    assert names == ["hooks.example.com"]
