"""`python -m bench.retention`: the expired jobs, with their events, go in sweeps; the live ones stay."""

from __future__ import annotations

import re
import sys

import pytest

from bench import retention


def test_the_retention_bench_deletes_the_expired_jobs_and_reports_the_rate(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["retention", "--jobs", "1200", "--live", "300"])
    retention.main()  # raises unless exactly the live jobs are left
    report = capsys.readouterr().out
    assert re.match(r"sqlite: 1200 expired jobs \(240 events\) among 300 live: 1200 deleted in [\d.]+ s of sweeps "
                    r"\([\d,]+ jobs/s\), per sweep \[1200\]; a chunk of 200: \d+–\d+ ms; 300 jobs left", report), report
