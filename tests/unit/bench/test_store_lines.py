"""`python -m bench.store_lines`: each pass's lines are inserted, claimed whole and written back, and its batch's
output file written, and each step's CPU a line is reported."""

from __future__ import annotations

import re
import sys

import pytest

from bench import store_lines


@pytest.mark.parametrize(("backlog", "per_row"), [("0", "1"), ("60", "1"), ("0", "8")])
def test_the_store_bench_runs_its_passes_and_reports_each_step(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str],
                                                                backlog: str, per_row: str) -> None:
    """With a backlog of the other task's lines too, which no pass claims; and with several lines a row, whose pass
    claims every line too."""
    monkeypatch.setattr(sys, "argv", ["store_lines", "--lines", "40", "--rounds", "3", "--backlog", backlog,
                                      "--row-inputs", per_row])
    store_lines.main()  # raises unless every pass claims all of its lines and its batch completes
    report = capsys.readouterr().out
    assert report.startswith(f"CPU µs a line, 40 lines a pass ({per_row} a row), median of 2 passes")
    for step in ("insert", "claim", "write back", "output file"):
        assert re.search(rf"{step} \d+ \(\d+–\d+\)", report), report


def test_the_store_bench_times_a_poll_of_a_batch_half_done(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["store_lines", "--lines", "40", "--rounds", "2", "--poll", "300",
                                      "--row-inputs", "1"])
    store_lines.main()  # raises unless the poll counts the half that ran
    report = capsys.readouterr().out.splitlines()
    assert report[1].startswith("wall µs a line, 40 lines a pass (1 a row)")
    assert re.fullmatch(r"a poll of a 300-line batch half done \(\{'total': 300, 'completed': 150, 'failed': 0\}\): "
                        r"\d+\.\d\d ms, median of 20", report[2]), report
