"""Plans forward passes: sorts sequences by length and cuts them into sub-batches, each padded only to its own
longest row. The cut points minimise the tokens computed (rows × longest row, padding included) plus a fixed
cost per pass, within the bounds on rows and tokens per pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: What one more forward pass costs, in tokens' worth of compute: the fixed part of a pass (dispatch, small
#: kernels, Python) measured on a 2-core CPU as about 50 ms, the time of ~25 tokens at batch speed. Larger on a GPU,
#: where a pass of a few rows is launch-bound.
CPU_PASS_OVERHEAD_TOKENS = 32
CUDA_PASS_OVERHEAD_TOKENS = 2048


def plan_batches(
    lengths: Sequence[int], max_rows: int, max_tokens: int, pass_overhead_tokens: int = CPU_PASS_OVERHEAD_TOKENS
) -> list[list[int]]:
    """Indices into `lengths`, grouped into sub-batches; every index appears once. A row longer than
    `max_tokens` still runs, alone."""
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
            cost = best[i] + rows * longest + pass_overhead_tokens
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches: list[list[int]] = []
    j = n
    while j > 0:
        batches.append(order[cut[j] : j])
        j = cut[j]
    return batches[::-1]


def pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and attention mask, on the CPU."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask
