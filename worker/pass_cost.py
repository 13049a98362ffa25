"""What a pass costs: its seconds for n inputs fitted as `fixed + per_input × n` over the recent passes (least
squares, each pass weighing `WEIGHT` against the older ones). The batcher fits two: a pass's turnaround (claim,
engine and write), by whose `per_input` it gives batch files' lines a pass's share while interactive jobs are
about; and the engine's time alone, by whose `seconds` it times the claim of the next pass to end just before the
running one. Passes are added by one thread and priced by another: a lock keeps the sums whole.

The average time per input of the last pass is the wrong measure for either: a pass of an interactive job and a
line or two is mostly fixed cost (launching the layers, the claim's Python), so its average makes a line look
several times dearer than it is, and the share shrinks to one line a pass — the batch then crawls (on a 2-core CPU
with the tiny model: passes of 2.5 inputs, a 10,000-line batch 10× slower beside 4 interactive clients than
alone); and a pass of 16 after a pass of one looks 16 times as long as that one — with the base-shaped model on the
CPU, 4.3 s against the 0.7 s it took, so its next claim came 2.5 s after it ended and the engine waited.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

#: How much the newest pass weighs against the fit of all before it.
WEIGHT = 0.05
#: Passes must differ in size by about this many inputs (the weighted variance of n) before the slope is trusted;
#: until then one more input is priced at the last pass's average.
MIN_SIZE_VARIANCE = 0.25


class PassCost:
    def __init__(self) -> None:
        self._sums = [0.0] * 5  # weights, n, seconds, n², n × seconds
        self._last_average: float | None = None
        self._last_inputs = 1
        self._lock = threading.Lock()

    def add(self, inputs: int, seconds: float) -> None:
        n = max(1, inputs)
        with self._lock:
            self._last_average, self._last_inputs = seconds / n, n
            for i, value in enumerate((1.0, n, seconds, n * n, n * seconds)):
                self._sums[i] = (1 - WEIGHT) * self._sums[i] + WEIGHT * value

    def per_input(self) -> float | None:
        """Seconds one more input adds to a pass; None before any pass. Never more than the last pass's average
        (the fixed part is not negative) and never less than a hundredth of it (a fit on noise). Until passes
        differ enough in size, the last pass's average."""
        fit = self._fit()
        if fit is None:
            return None
        slope = fit.bounded_slope
        return fit.average if slope is None else slope

    def marginal(self) -> float | None:
        """`per_input` once passes have differed enough in size for its slope to be trusted; None until then. The
        average of passes of one size is no measure of what one more input adds where they are mostly fixed cost:
        a GPU's pass of one interactive job took ~14 ms (claim, device and write-back: BENCHMARKS.md, session 30),
        of which one input is a few hundredths — priced at the whole, a row of a batch's lines held one line."""
        fit = self._fit()
        return None if fit is None else fit.bounded_slope

    def seconds(self, inputs: int) -> float | None:
        """The seconds of a pass of `inputs`, fitted (neither part below zero); None before any pass. Until passes
        differ enough in size, the last pass's average times `inputs`, but no longer than the last pass took: which
        part of it was fixed is not known yet, and a pass of more inputs timed as that many times its average would
        be timed several times too long. Never longer than the last pass allows, either (its average times the
        larger of the two sizes: with a fixed part of zero or more, a pass of more inputs costs at most that many
        times its average, one of fewer at most what it took): a slope fitted over passes a few inputs apart is
        noise made steep — on a 2-core CPU an early slow pass of 512 and a pass of 488 timed the next 512 at
        0.62 s where it took 0.10, and its claim came 0.44 s late while the device waited."""
        fit = self._fit()
        if fit is None:
            return None
        if fit.slope is None:
            return fit.average * min(max(1, inputs), fit.last_inputs)
        slope = max(0.0, fit.slope)
        fitted = max(0.0, fit.mean_seconds - slope * fit.mean_inputs) + slope * max(1, inputs)
        return min(fitted, fit.average * max(inputs, fit.last_inputs))

    def _fit(self) -> _Fit | None:
        """The sums as a fit (None before any pass)."""
        with self._lock:
            average, last_inputs, (w, n, t, nn, nt) = self._last_average, self._last_inputs, self._sums
        if average is None:
            return None
        mean_inputs, mean_seconds = n / w, t / w
        variance = nn / w - mean_inputs ** 2
        slope = None if variance < MIN_SIZE_VARIANCE else (nt / w - mean_inputs * mean_seconds) / variance
        return _Fit(average, last_inputs, mean_inputs, mean_seconds, slope)


class _Fit(NamedTuple):
    """The last pass's average and size, the weighted means of the passes' sizes and seconds, and the least-squares
    slope of their seconds on their sizes — None while the passes are too alike in size to trust it."""

    average: float
    last_inputs: int
    mean_inputs: float
    mean_seconds: float
    slope: float | None

    @property
    def bounded_slope(self) -> float | None:
        """The slope no more than the last pass's average (the fixed part is not negative) and no less than a
        hundredth of it (a fit on noise); None while it is not trusted."""
        return None if self.slope is None else min(self.average, max(self.slope, self.average / 100))
