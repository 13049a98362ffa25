"""Plans forward passes: sorts sequences by length and cuts them into sub-batches, each padded only to its own
longest row for attention (the linear layers run on packed real tokens, `worker/engine/packed.py`, so their cost
does not depend on the cut). The cut points minimise attention's work (rows × longest², padding included) plus a
fixed cost per pass, within the bounds on rows and padded tokens per pass."""

from __future__ import annotations

from collections.abc import Sequence

#: What one more forward pass costs, in tokens' worth of compute: the fixed part of a pass (dispatch, small
#: kernels, Python) measured on a 2-core CPU as about 50 ms, the time of ~25 tokens at batch speed. Larger on a GPU,
#: where a pass of a few rows is launch-bound.
CPU_PASS_OVERHEAD_TOKENS = 32
CUDA_PASS_OVERHEAD_TOKENS = 2048


def attention_width(dim: int, hidden_dim: int) -> int:
    """A row padded to L tokens costs L² / attention_width tokens' worth of linear-layer work in attention: per
    layer, attention is 4·L²·dim FLOPs per row (scores and weighted sum), the linear layers 2·(4·dim² +
    2·dim·hidden_dim) per token. 4608 for distilbert-base: a row of 384 costs 32 tokens, 8 % more than its own."""
    return 2 * dim + hidden_dim


def plan_batches(
    lengths: Sequence[int], max_rows: int, max_tokens: int, pass_overhead_tokens: int = CPU_PASS_OVERHEAD_TOKENS,
    width: int = attention_width(768, 3072),
) -> list[list[int]]:
    """Indices into `lengths`, grouped into sub-batches; every index appears once. `max_tokens` bounds rows ×
    longest row (the padded attention buffers); a row longer than it still runs, alone."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    if n == 0:
        return []
    # best[j]: least cost of the first j sorted rows; cut[j]: where the last sub-batch of that plan starts.
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = lengths[order[j - 1]]
        for i in range(j - 1, max(-1, j - 1 - max_rows), -1):
            rows = j - i
            if rows > 1 and rows * longest > max_tokens:
                break
            cost = best[i] + rows * longest * longest / width + pass_overhead_tokens
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches: list[list[int]] = []
    j = n
    while j > 0:
        batches.append(order[cut[j] : j])
        j = cut[j]
    return batches[::-1]
