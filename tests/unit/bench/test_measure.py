"""A mode run again later (`Result.bracketed`): the rate of both runs together, each run's rate said."""

from __future__ import annotations

import pytest

from bench.measure import Result


def test_a_mode_run_before_and_after_reports_both_runs_together() -> None:
    before = Result("a", "pipeline, one job per call", 100, 1000, 1000, 0.25, [0.001] * 100, notes=["kept"],
                    flops=5.0)
    after = Result("a", "pipeline, one job per call", 100, 1000, 1000, 0.5, [0.002] * 100, flops=5.0)
    both = before.bracketed(after, "(d)")
    assert both.sequences == 100 and both.sequences_per_s == pytest.approx(100 / 0.375)
    assert both.flops == 5.0 and both.latency_ms(50) == pytest.approx(1.5)
    assert both.notes == ["kept", "run before and after (d): 400.00 and 200.00 seq/s; the table's rate is the two "
                                  "together"]
    assert before.notes == ["kept"] and before.wall_s == 0.25  # the first run's result is left as it was
