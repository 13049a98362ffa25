"""`python -m bench.device_transfer`: for each task, what a batch sends to a device process and gets back, timed
and sized beside the whole prepared batch; the part sent is the smaller."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from bench import device_transfer


def test_each_task_s_trip_is_timed_and_what_is_sent_is_less_than_the_prepared_batch(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["device_transfer", "--inputs", "16", "--rounds", "1", "--models",
                                      str(tmp_path)])
    device_transfer.main()
    lines = capsys.readouterr().out.splitlines()
    pattern = (r"^(\S+), 16 inputs: sent ([\d.]+) ms \(([\d.]+) MB; made, written and read\), back ([\d.]+) ms, "
               r"([\d.]+) µs an input; the whole prepared batch ([\d.]+) ms \(([\d.]+) MB\)$")
    found = [re.match(pattern, line) for line in lines]
    assert [match.group(1) for match in found if match] == ["fill-mask", "question-answering"], lines
    qa = found[1]
    assert qa is not None and float(qa.group(3)) < float(qa.group(7))  # QA leaves its texts and offsets behind
