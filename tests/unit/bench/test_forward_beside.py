"""`python -m bench.forward_beside`: the tiny checkpoint's engine timed alone, beside a thread of pure Python at two
switch intervals, beside a process of pure Python and in a device process beside such a thread, each case reported
once; the interpreter left as it was."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from bench import forward_beside


def test_the_bench_times_the_forward_pass_in_each_case_and_leaves_the_switch_interval(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["forward_beside", "--lines", "16", "--seconds", "0.05", "--models",
                                      str(tmp_path)])
    interval = sys.getswitchinterval()
    forward_beside.main()
    report = capsys.readouterr().out
    cases = re.findall(r"^(.+), switch interval ([\d.]+) ms: ([\d.]+) ms a forward pass of 16 lines$", report,
                       re.MULTILINE)
    assert [(label, float(ms)) for label, ms, _ in cases] == [
        ("alone", interval * 1000), ("beside a thread of pure Python", interval * 1000),
        ("beside a thread of pure Python", 0.2), ("beside a process of pure Python", interval * 1000),
        ("in a device process, beside a thread of pure Python", interval * 1000)], report
    assert all(float(ms) > 0 for _, _, ms in cases)
    in_turn = re.search(r"^passes in turn there, each prepared here: sent as the one before ends ([\d.]+) ms a pass, "
                        r"sent while it runs ([\d.]+) ms$", report, re.MULTILINE)
    assert in_turn is not None and all(float(ms) > 0 for ms in in_turn.groups()), report
    assert sys.getswitchinterval() == interval
