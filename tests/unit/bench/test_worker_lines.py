"""`python -m bench.worker_lines`: a batcher drains each batch's lines, every one of them, at each row size (or each
round's interactive jobs at each pass size), and the worker's CPU a line (a job) is reported for each."""

from __future__ import annotations

import re
import sys

import pytest

from bench import worker_lines


def test_the_worker_bench_drains_every_line_at_each_row_size(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["worker_lines", "--lines", "600", "--rounds", "2", "--row-inputs", "1,16"])
    worker_lines.main()  # raises unless every line of each batch ran and succeeded
    report = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in report] == ["rows of 1", "rows of 16"]
    for line in report:
        assert re.search(r"median of 1 rounds of 600 lines \(range\): \d+\.\d \(\d+\.\d–\d+\.\d\); wall \d+\.\d$",
                         line), line


def test_the_worker_bench_drains_every_interactive_job_at_each_pass_size(monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["worker_lines", "--lines", "100", "--rounds", "2",
                                      "--interactive-passes", "4,16"])
    worker_lines.main()  # raises unless every job of each round ran and succeeded
    report = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in report] == [f"interactive jobs, passes of {size}" for size in (4, 16)]
    for line in report:
        assert re.search(r"median of 1 rounds of 100 jobs \(range\): \d+\.\d \(\d+\.\d–\d+\.\d\); wall \d+\.\d$",
                         line), line


def test_the_null_engine_answers_each_line_with_one_output() -> None:
    from worker.engine import JobPayload

    engine = worker_lines.NullEngine()
    jobs = [JobPayload({"input_string": ["a [MASK]"]}, {"top_k": 5})] * 3
    outputs = engine.finish(jobs, engine.infer(jobs, engine.prepare(jobs)))
    assert len(outputs) == 3 and all(len(output) == 1 and len(output[0]) == 5 for output in outputs)
