"""`python -m bench.schema_ab`: each round's jobs are submitted, claimed and written back on both revisions'
databases, and each step's CPU a job is reported for each."""

from __future__ import annotations

import re
import sys

import pytest

from bench import schema_ab


def test_the_schema_bench_runs_both_revisions_and_reports_each_step(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # The code reads the columns of 0017 (a batch's rows of lines): the oldest revision it runs on.
    monkeypatch.setattr(sys, "argv", ["schema_ab", "--base", "0017", "--rounds", "2", "--jobs", "3"])
    schema_ab.main()  # raises unless every job is claimed and written back once
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["revision 0017", "revision head"]
    for line in lines:
        for step in ("submit", "claim", "write back"):
            assert re.search(rf"{step} \d+ / \d+", line), line
