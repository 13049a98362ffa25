"""`python -m bench.file_check`: a batch and an evaluation are created from files of the asked-for lines, and the
check's time for each is reported."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from bench import file_check


def test_the_file_check_bench_creates_a_batch_and_an_evaluation_and_reports_each(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["file_check", "--lines", "30", "--rounds", "2", "--models", str(tmp_path)])
    file_check.main()  # raises unless each creation succeeds
    report = capsys.readouterr().out
    for kind in ("batch", "evaluation"):
        assert re.search(rf"^{kind} of 30 lines checked and queued: [\d.]+ s wall, [\d.]+ CPU s \(\d+ CPU-µs a "
                         r"line\), least of 2$", report, re.MULTILINE), report
