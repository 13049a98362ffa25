"""The k most probable tokens of each row of logits over a vocabulary, with their softmax probabilities — what
`logits.softmax(-1).topk(k)` gives, without writing the softmax out or sorting whole rows.

Softmax is monotonic, so the top k of the probabilities are the top k of the logits, and each of their
probabilities is `exp(logit - max) / sum(exp(logits - max))`, the formula torch's softmax evaluates. The top k of a
row come from a two-step search: the row cut into blocks, the k blocks with the largest maxima hold every one of
the row's k largest values (a block holding one of them has a maximum at least as large as the k-th value, and at
most k blocks can), so a top-k over those k blocks (plus the few values past the last whole block) finishes it.
On a CPU that is one read of the row for the block maxima where `topk` over 28996 values costs as much as the
softmax itself; and rows go through in slices whose logits stay in the cache between the reads.
"""

from __future__ import annotations

import torch

#: Values per block: the blocks of a 28996-token vocabulary number 44, their maxima read in one pass.
BLOCK = 659
#: Rows per slice on the CPU: 32 rows of 28996 float32 logits are 3.7 MB, within a core's share of the cache.
CPU_ROWS_PER_SLICE = 32


@torch.inference_mode()
def softmax_top_k(logits: torch.Tensor, k: int, rows_per_slice: int | None = None) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
    """(probabilities, token ids), each (rows, k), best first, of float32 `logits` (rows, vocabulary);
    `rows_per_slice` rows at a time (None: all at once, as on a GPU)."""
    rows = logits.shape[0]
    step = rows_per_slice or rows
    if rows <= step:
        return _slice_top_k(logits, k)
    parts = [_slice_top_k(logits[start: start + step], k) for start in range(0, rows, step)]
    return torch.cat([values for values, _ in parts]), torch.cat([indices for _, indices in parts])


def _slice_top_k(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, vocabulary = logits.shape
    blocks = vocabulary // BLOCK
    if k * BLOCK * 2 > vocabulary or rows == 0:  # few blocks to skip: the plain search costs less
        top = logits.max(dim=-1, keepdim=True).values
        values, indices = logits.topk(k)
    else:
        whole = logits[:, : blocks * BLOCK].view(rows, blocks, BLOCK)
        maxima = whole.amax(dim=-1)
        top = maxima.amax(dim=-1, keepdim=True)
        best_blocks = maxima.topk(k).indices  # (rows, k)
        candidates = whole.gather(1, best_blocks[:, :, None].expand(rows, k, BLOCK)).reshape(rows, k * BLOCK)
        tail = logits[:, blocks * BLOCK:]
        if tail.shape[1]:
            top = torch.maximum(top, tail.amax(dim=-1, keepdim=True))
            candidates = torch.cat([candidates, tail], dim=1)
        values, places = candidates.topk(k)
        in_blocks = places < k * BLOCK
        block_ids = best_blocks.gather(1, torch.where(in_blocks, places // BLOCK, 0))
        indices = torch.where(in_blocks, block_ids * BLOCK + places % BLOCK, blocks * BLOCK + places - k * BLOCK)
    # Below exp(-80) a term is under 1e-34 of the sum's largest one (1): dropped to that floor, it changes nothing a
    # float32 sum keeps, and no exp lands among the subnormal floats, which cost a CPU ~50x as much to compute.
    total = (logits - top).clamp_(min=-80.0).exp_().sum(dim=-1, keepdim=True)
    return (values - top).exp_().div_(total), indices
