"""A real HTTP receiver for webhook tests: a threaded server on loopback whose answers are scripted per path."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        #: path → list of statuses to answer in turn (the last one repeats); "sleep:S" sleeps S seconds then 200.
        self.script: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def on(self, path: str, *answers: str) -> str:
        self.script[path] = list(answers)
        return self.url + path

    def requests_to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                with receiver.lock:
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    answers = receiver.script.get(self.path, ["200"])
                    answer = answers.pop(0) if len(answers) > 1 else answers[0]
                if answer.startswith("sleep:"):
                    time.sleep(float(answer.split(":")[1]))
                    answer = "200"
                self.send_response(int(answer))
                if answer.startswith("3"):
                    self.send_header("Location", receiver.url + "/redirect-target")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        return Handler


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
