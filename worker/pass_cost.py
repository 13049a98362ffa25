"""What one more input costs a pass: its seconds (the batcher's: claim, engine and write) for n inputs fitted as
`fixed + per_input × n` over the recent passes (least squares, each pass weighing `WEIGHT` against the older
ones). The batcher gives batch files' lines a pass's share by it while interactive jobs are about. Passes are
added by one thread and priced by another: a lock keeps the sums whole.

The average time per input of the last pass is the wrong measure there: a pass of an interactive job and a line
or two is mostly fixed cost (launching the layers, the claim's Python), so its average makes a line look several
times dearer than it is, and the share shrinks to one line a pass — the batch then crawls (on a 2-core CPU with
the tiny model: passes of 2.5 inputs, a 10,000-line batch 10× slower beside 4 interactive clients than alone).
"""

from __future__ import annotations

import threading

#: How much the newest pass weighs against the fit of all before it.
WEIGHT = 0.05
#: Passes must differ in size by about this many inputs (the weighted variance of n) before the slope is trusted;
#: until then one more input is priced at the last pass's average.
MIN_SIZE_VARIANCE = 0.25


class PassCost:
    def __init__(self) -> None:
        self._sums = [0.0] * 5  # weights, n, seconds, n², n × seconds
        self._last_average: float | None = None
        self._lock = threading.Lock()

    def add(self, inputs: int, seconds: float) -> None:
        n = max(1, inputs)
        with self._lock:
            self._last_average = seconds / n
            for i, value in enumerate((1.0, n, seconds, n * n, n * seconds)):
                self._sums[i] = (1 - WEIGHT) * self._sums[i] + WEIGHT * value

    def per_input(self) -> float | None:
        """Seconds one more input adds to a pass; None before any pass. Never more than the last pass's average
        (the fixed part is not negative) and never less than a hundredth of it (a fit on noise)."""
        with self._lock:
            average, (w, n, t, nn, nt) = self._last_average, self._sums
        if average is None:
            return None
        variance = nn / w - (n / w) ** 2
        if variance < MIN_SIZE_VARIANCE:
            return average
        slope = (nt / w - (n / w) * (t / w)) / variance
        return min(average, max(slope, average / 100))
