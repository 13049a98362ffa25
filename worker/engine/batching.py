"""Plans forward passes: sorts sequences by length and cuts them into sub-batches, each padded only to its own
longest row for attention (the linear layers run on packed real tokens, `worker/engine/packed.py`, so their cost
does not depend on the cut). The cut points minimise attention's work (rows × longest², padding included) plus a
fixed cost per pass, within the bounds on rows and padded tokens per pass."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: What one more forward pass costs, in tokens' worth of compute: the fixed part of a pass (dispatch, small
#: kernels, Python) measured on a 2-core CPU as about 50 ms, the time of ~25 tokens at batch speed. Larger on a GPU,
#: where a pass of a few rows is launch-bound.
CPU_PASS_OVERHEAD_TOKENS = 32
CUDA_PASS_OVERHEAD_TOKENS = 2048
#: Above this many candidate cuts per row, the planner weighs them with NumPy.
VECTOR_FROM_ROWS = 64


def attention_width(dim: int, hidden_dim: int) -> int:
    """A row padded to L tokens costs L² / attention_width tokens' worth of linear-layer work in attention: per
    layer, attention is 4·L²·dim FLOPs per row (scores and weighted sum), the linear layers 2·(4·dim² +
    2·dim·hidden_dim) per token. 4608 for distilbert-base: a row of 384 costs 32 tokens, 8 % more than its own."""
    return 2 * dim + hidden_dim


def plan_batches(
    lengths: Sequence[int], max_rows: int, max_tokens: int, pass_overhead_tokens: int = CPU_PASS_OVERHEAD_TOKENS,
    width: float = attention_width(768, 3072),
) -> list[list[int]]:
    """Indices into `lengths`, grouped into sub-batches; every index appears once. `max_tokens` bounds rows ×
    longest row (a pass's activations; the padded layout's attention buffers); a row longer than it still runs,
    alone. `width` infinite: attention runs unpadded (row by row, or varlen), so padding costs nothing and only the
    passes' own cost and the bounds cut."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    if n == 0:
        return []
    longest_of_all = lengths[order[-1]]
    if n <= max_rows and n * longest_of_all <= max_tokens:
        # All in one pass, unless splitting saves more attention than a pass costs: at most every row's share of
        # the longest row's (a GPU's pass overhead exceeds that for rows of ordinary lengths).
        saving = sum(longest_of_all * longest_of_all - lengths[i] * lengths[i] for i in order) / width
        if saving <= pass_overhead_tokens:
            return [order]
    # best[j]: least cost of the first j sorted rows; cut[j]: where the last sub-batch of that plan starts. The last
    # sub-batch of rows i..j-1 costs (j - i) · c + overhead, c = longest² / width, so best[j] is the least of
    # best[i] - i·c over the i allowed, plus j·c + overhead. While c stays the same (rows of one length) the
    # candidates' values do not change and one more joins per step: the least is kept, and searched afresh only
    # when c changes or the window of allowed cuts leaves it behind (a GPU batch of 512 rows once cost 12 ms here).
    best = [0.0] * (n + 1)
    best_array = np.zeros(n + 1)  # the same, for the vectorised search
    cut = [0] * (n + 1)
    starts = np.arange(n + 1, dtype=np.float64)
    i, least, searched_for = 0, 0.0, -1.0  # the kept least (its cut, its value) and the c it was searched for
    for j in range(1, n + 1):
        longest = lengths[order[j - 1]]
        per_row = longest * longest / width
        fits = max(1, max_tokens // longest)  # rows × longest ≤ max_tokens; one row always runs
        low = max(0, j - min(max_rows, fits))
        if per_row == searched_for and i >= low:
            value = best[j - 1] - (j - 1) * per_row  # the one new candidate
            if value <= least:  # ties: the shortest last sub-batch
                i, least = j - 1, value
        elif j - low > VECTOR_FROM_ROWS:
            candidates = best_array[low:j] - starts[low:j] * per_row
            i = low + len(candidates) - 1 - int(np.argmin(candidates[::-1]))
            least, searched_for = float(candidates[i - low]), per_row
        else:  # a few candidates: a Python loop costs less than NumPy's call overhead
            i, least = j - 1, best[j - 1] - (j - 1) * per_row
            for start in range(j - 2, low - 1, -1):
                value = best[start] - start * per_row
                if value < least:
                    i, least = start, value
            searched_for = per_row
        cut[j] = i
        best[j] = best_array[j] = least + j * per_row + pass_overhead_tokens
    batches: list[list[int]] = []
    j = n
    while j > 0:
        batches.append(order[cut[j] : j])
        j = cut[j]
    return batches[::-1]
