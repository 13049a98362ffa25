"""What one more input costs a pass, fitted over recent passes (`worker/pass_cost.py`)."""

from __future__ import annotations

import pytest

from worker.pass_cost import PassCost


def test_nothing_is_known_before_a_pass_and_equal_passes_give_their_average() -> None:
    cost = PassCost()
    assert cost.per_input() is None
    for _ in range(10):
        cost.add(500, 0.5)
    assert cost.per_input() == pytest.approx(0.001)


def test_the_marginal_cost_is_told_only_once_passes_differ_in_size() -> None:
    """Passes of one job each (a GPU's interactive load: ~14 ms a pass, nearly all of it fixed) say nothing of what
    one more input adds — the average would price an input at the whole pass; passes of several sizes do."""
    cost = PassCost()
    assert cost.marginal() is None
    for _ in range(20):
        cost.add(1, 0.0141)  # 14 ms fixed, 0.1 ms the input
    assert cost.marginal() is None and cost.per_input() == pytest.approx(0.0141)
    for n in [500, 1, 480, 1, 500]:
        cost.add(n, 0.014 + 0.0001 * n)
    assert cost.marginal() == pytest.approx(0.0001, rel=1e-6) == cost.per_input()


def test_passes_of_several_sizes_give_the_cost_of_one_more_input_not_the_average() -> None:
    cost = PassCost()
    for n in [1, 3, 2, 5, 1, 4, 2, 6, 3, 1] * 3:
        cost.add(n, 0.010 + 0.001 * n)  # 10 ms a pass, 1 ms an input
    assert cost.per_input() == pytest.approx(0.001, rel=1e-6)
    assert 0.010 / 1 + 0.001 > 5 * cost.per_input()  # the last pass's average: more than 5× as dear


def test_the_slope_is_kept_between_a_hundredth_of_the_average_and_the_average() -> None:
    fixed = PassCost()
    for n in [1, 2, 3, 4] * 5:
        fixed.add(n, 0.010)  # no input adds anything: a hundredth of the last average, not zero
    assert fixed.per_input() == pytest.approx(0.010 / 4 / 100)
    steep = PassCost()
    for n in [1, 2, 3, 4] * 5:
        steep.add(n, -0.030 + 0.020 * n)  # a fit whose fixed part is negative: no more than the average
    assert steep.per_input() == pytest.approx((-0.030 + 0.080) / 4)


def test_old_passes_fade() -> None:
    cost = PassCost()
    for n in [10, 20] * 20:
        cost.add(n, 0.005 * n)
    for n in [10, 20] * 60:
        cost.add(n, 0.001 * n)  # the device got faster
    assert cost.per_input() == pytest.approx(0.001, rel=0.05)


def test_a_pass_is_timed_by_the_fit_not_by_the_last_pass_average() -> None:
    """After a pass of one input, a pass of 16 is its fixed cost and 16 inputs' worth, not 16 times that pass."""
    cost = PassCost()
    assert cost.seconds(16) is None
    cost.add(8, 0.5)
    # Passes of one size: no longer than the last (what of it is fixed is not known), shorter by its average.
    assert cost.seconds(16) == pytest.approx(0.5) and cost.seconds(4) == pytest.approx(0.25)
    for n in [8, 16, 1, 12, 8, 16, 1] * 3:
        cost.add(n, 0.25 + 0.03 * n)  # 250 ms a pass, 30 ms an input
    assert cost.seconds(16) == pytest.approx(0.25 + 0.03 * 16, rel=0.05)
    assert cost.seconds(16) < 0.3 * 16  # what the last pass's average (of one input) would say


def test_a_fitted_pass_is_never_timed_below_zero() -> None:
    falling = PassCost()
    for n in [1, 2, 3, 4] * 5:
        falling.add(n, 0.5 - 0.1 * n)  # noise that makes bigger passes look shorter: no negative slope
    assert falling.seconds(10) == pytest.approx(0.25, rel=0.05)  # the mean pass, whatever its size


def test_a_fit_is_never_longer_than_the_last_pass_allows() -> None:
    """A slow first pass and one a few inputs smaller make a steep slope of noise: the next pass is timed by what
    the last one took, not by that slope (its claim would come late, and the device wait)."""
    cost = PassCost()
    for n, seconds in [(512, 0.9), (488, 0.1)]:
        cost.add(n, seconds)
    assert cost.seconds(512) == pytest.approx(0.1 / 488 * 512)
    assert cost.seconds(100) == pytest.approx(0.1)  # fewer inputs: at most what the last pass took
