"""`python -m bench.store_requests`: submissions and polls made through the job store, and each one's CPU reported."""

from __future__ import annotations

import re
import sys

import pytest

from bench import store_requests


def test_the_store_requests_bench_submits_polls_and_reports_each(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["store_requests", "--calls", "20", "--rounds", "2", "--queued", "5"])
    store_requests.main()  # raises unless every submission was stored and every poll found its job
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "CPU µs a call, median of 2 rounds of 20 (sqlite, 5 jobs queued first)"
    assert re.fullmatch(r"submission: \d+ in this process", lines[1]), lines
    assert re.fullmatch(r"poll: \d+ in this process", lines[2]), lines
