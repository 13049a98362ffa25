"""The command line: `distilq up` runs the whole embedded stack and stops every child on SIGTERM;
`distilq keys create` prints the key alone; `distilq migrate` builds the schema."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, inspect

from distilq import stack
from distilq.stack import LocalStack, free_port
from tests.integration.stack import distilq_up, processes_with


def test_up_serves_the_seed_request_and_sigterm_stops_every_child(tmp_path: Path,
                                                                  tiny_models: dict[str, Path]) -> None:
    with distilq_up(tmp_path, tiny_models) as up:
        created = up.new_key()
        key = created.stdout.strip()
        assert created.stdout == key + "\n" and key.startswith("dq_") and len(key) > 30

        response = requests.post(
            f"{up.url}/v1/fill-mask",
            json={"inputs": {"input_string": ["Paris is the [MASK] of France.", "Today is a [MASK] day!"]},
                  "parameters": {"top_k": 2}},
            headers={"Authorization": f"Bearer {key}", "Prefer": "wait=60"}, timeout=70,
        )
        assert response.status_code == 200, response.text
        job = response.json()
        assert job["status"] == "succeeded"
        assert [len(rows) for rows in job["output"]] == [2, 2]
        assert set(job["output"][0][0]) == {"score", "token", "token_str", "sequence"}
        assert key.encode() not in (up.home / "distilq.db").read_bytes()  # stored hashed only
        assert len(processes_with(up.marker)) >= 5  # up, redis, api (+ gunicorn worker), worker, beat
        up.stop()


def test_migrate_builds_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {**os.environ, "DISTILQ_DATABASE_URL": url, "DISTILQ_HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "distilq.cli", "migrate"], env=env, check=True, capture_output=True)
    tables = set(inspect(create_engine(url)).get_table_names())
    assert {"jobs", "api_keys", "alembic_version"} <= tables


def test_keys_create_prints_the_key_alone_and_says_which_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILQ_")}
    env["DISTILQ_HOME"] = "relative-home"  # relative to the current directory: another database elsewhere

    def create() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "distilq.cli", "keys", "create", "--name", "me"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, check=True)

    first = create()
    assert first.stdout.startswith("dq_") and first.stdout.count("\n") == 1
    database = tmp_path / "relative-home" / "distilq.db"
    assert f"keys of the database sqlite:///{database}" in first.stderr
    assert "warning: there was no database" in first.stderr
    assert "Running upgrade" not in first.stderr and "alembic" not in first.stderr
    assert "warning" not in create().stderr  # the same directory: the same database


def test_the_api_starts_on_another_port_when_another_server_took_the_one_drawn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process (another test process's stack) may take the port drawn for the API before the API binds it:
    that one answers /healthz while this one waits to bind, then gives up. The launcher waits for its own API's
    answer, and draws another port."""

    class Answers(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    taken = other.server_address[1]
    threading.Thread(target=other.serve_forever, daemon=True).start()
    draws = iter([taken])
    monkeypatch.setattr(stack, "free_port", lambda: next(draws, None) or free_port())
    launcher = LocalStack(tmp_path, {"DISTILQ_REDIS_URL": "redis://127.0.0.1:1/0"}, log_dir=tmp_path)
    try:
        launcher.run("migrate")
        url = launcher.start_api()
        port = int(url.rsplit(":", 1)[1])
        assert port != taken
        assert stack.listens_on(launcher.processes["api"].pid, port) is not False
        assert requests.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}  # ours: the other sends no body
        assert "Connection in use" in (tmp_path / "api.log").read_text()  # the first try met the taken port
    finally:
        launcher.stop_all()
        other.shutdown()
