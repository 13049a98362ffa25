"""`python -m bench.file_check`: a batch (with each asked-for count of check processes) and an evaluation are created
from files of the asked-for lines, and the check's time for each is reported."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from bench import file_check


def test_the_file_check_bench_creates_a_batch_and_an_evaluation_and_reports_each(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["file_check", "--lines", "30", "--rounds", "2", "--check-processes", "0,1",
                                      "--models", str(tmp_path)])
    file_check.main()  # raises unless each creation succeeds
    report = capsys.readouterr().out
    line = r"of 30 lines checked and queued: [\d.]+ s wall, [\d.]+ CPU s \(\d+ CPU-µs a line\)"
    checkers = re.findall(rf"^batch {line}, ([\d.]+) CPU s in (\d) check processes, least of 2$", report, re.MULTILINE)
    assert [processes for _, processes in checkers] == ["0", "1"], report
    assert float(checkers[0][0]) == 0  # none in the request's thread (30 lines' judging is below /proc's tick)
    assert re.search(rf"^evaluation {line}, least of 2$", report, re.MULTILINE), report
