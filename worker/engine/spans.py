"""Answer spans: QuestionAnsweringPipeline's span scoring (transformers 4.57.6, `select_starts_ends` and
`decode_spans`), for every chunk of a forward pass at once on the device, and for one chunk on the host.

Per chunk the pipeline takes a softmax of the start logits and of the end logits over the chunk's tokens, those
that cannot be part of an answer set to −10000 first; keeps start₀·end₀ as the chunk's "no answer" score; zeroes
both at position 0; and ranks the spans start ≤ end < start + max_answer_len by start·end. `best_spans` does that
for the chunks of a pass padded to one length (padding at −∞, so it weighs nothing in the softmax): the spans as a
(chunks × length × max_answer_len) band rather than the pipeline's length × length product, the best k of every
chunk by one top-k, and one small tensor per pass for the host. Where a chunk has fewer spans scoring above zero
than are asked for (tiny contexts), the pipeline's zero-score spans fill up in the order of its full product;
such a chunk is scored on the host by `select_starts_ends`, the pipeline's own arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from worker.engine.packed import PackedPass

#: What the pipeline writes over logits that cannot start or end an answer.
MASKED_LOGIT = -10000.0
#: The pipeline's starting "no answer" score: larger than any probability.
NO_NULL_SCORE = 1000000.0
#: Band entries (rows × length × width) scored at once: bounds the device memory of a pass whose requests ask
#: for long answers (max_answer_len up to the model's 512 tokens).
MAX_BAND_ENTRIES = 1 << 23


@dataclass(frozen=True)
class Spans:
    """One chunk's candidate spans, best first (token positions), their scores, and its "no answer" score."""

    starts: list[int]
    ends: list[int]
    scores: list[float]
    null: float


def padded_chunks(passes: list[tuple[PackedPass, torch.Tensor]],
                  bounds: torch.Tensor, cls_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The chunks of every pass, in pass order, padded to one length: from each pass's (tokens, 2) packed start/end
    logits, (chunks, longest) start and end logits, which slots are real tokens, and which tokens may start or end
    an answer: those from each chunk's (context start, context end) in `bounds`, and CLS wherever it is (the
    pipeline keeps it: models use it for "no answer")."""
    chunks, longest = sum(len(batch.rows) for batch, _ in passes), max(batch.longest for batch, _ in passes)
    slots, logits, ids = [], [], []
    first = 0
    for batch, pass_logits in passes:
        row = torch.div(batch.slots, batch.longest, rounding_mode="floor")
        slots.append((row + first) * longest + batch.positions)
        logits.append(pass_logits)
        ids.append(batch.input_ids)
        first += len(batch.rows)
    at = torch.cat(slots)
    padded = logits[0].new_zeros(chunks * longest, 2)
    padded[at] = torch.cat(logits)
    padded = padded.view(chunks, longest, 2)
    token = torch.full((chunks * longest,), -1, dtype=torch.long, device=at.device)
    token[at] = torch.cat(ids)
    token = token.view(chunks, longest)
    position = torch.arange(longest, device=at.device)
    allowed = (position >= bounds[:, :1]) & (position < bounds[:, 1:]) | (token == cls_id)
    return padded[..., 0], padded[..., 1], token >= 0, allowed


def best_spans(start: torch.Tensor, end: torch.Tensor, real: torch.Tensor, allowed: torch.Tensor,
               max_answer_len: int, k: int) -> torch.Tensor:
    """For rows of start and end logits padded to one length (`real`: not padding; `allowed`: may start or end an
    answer), (rows, 2 + 4k) float32: each row's "no answer" score, how many spans score above zero, then its k best
    span scores, their starts, their ends (best first; score −1 where the band holds fewer than k spans), and
    whether both ends of each may answer (the pipeline's filter)."""
    rows, length = start.shape
    fill = torch.where(real, MASKED_LOGIT, float("-inf"))
    start = torch.where(allowed, start, fill).softmax(dim=-1)
    end = torch.where(allowed, end, fill).softmax(dim=-1)
    null = start[:, 0] * end[:, 0]
    start[:, 0] = 0.0
    end[:, 0] = 0.0
    width = min(max_answer_len, length)
    step = max(1, MAX_BAND_ENTRIES // (length * width))
    parts = []
    for low in range(0, rows, step):
        # band[r, s, o] = start[r, s] · end[r, s + o], o < width: every span the pipeline may keep, row-major as its
        # flattened product is (ends past the row's last token read padding, probability 0).
        ends_from = functional.pad(end[low:low + step], (0, width - 1)).unfold(1, width, 1)
        band = (start[low:low + step, :, None] * ends_from).reshape(-1, length * width)
        scores, index = band.topk(min(k, length * width), dim=-1)
        scores = functional.pad(scores, (0, k - scores.shape[1]), value=-1.0)
        index = functional.pad(index, (0, k - index.shape[1]))
        starts = torch.div(index, width, rounding_mode="floor")
        ends = starts + index % width
        may = allowed[low:low + step]
        kept = may.gather(1, starts) & may.gather(1, ends.clamp(max=length - 1))  # past the end: scores 0
        positive = (band > 0).sum(dim=-1, dtype=torch.float32)
        parts.append(torch.cat([null[low:low + step, None], positive[:, None], scores, starts.float(), ends.float(),
                                kept.float()], dim=1))
    return torch.cat(parts)


def read_spans(table: np.ndarray, wanted: list[int]) -> list[Spans | None]:
    """The rows of `best_spans`, each cut to its chunk's own number of spans (`wanted`); None for a chunk with fewer
    spans above zero than that (then it is scored on the host)."""
    k = (table.shape[1] - 2) // 4
    null, positive = table[:, 0].tolist(), table[:, 1].tolist()
    scores = table[:, 2: 2 + k].tolist()
    starts = table[:, 2 + k: 2 + 2 * k].astype(np.int64).tolist()
    ends = table[:, 2 + 2 * k: 2 + 3 * k].astype(np.int64).tolist()
    kept = table[:, 2 + 3 * k:].astype(bool)
    found: list[Spans | None] = []
    for row, count in enumerate(wanted):
        if positive[row] < count:
            found.append(None)
        elif kept[row, :count].all():
            found.append(Spans(starts[row][:count], ends[row][:count], scores[row][:count], null[row]))
        else:  # the pipeline's filter (a span scores 0 unless both its ends may answer: rarely used here)
            keep = kept[row, :count].tolist()
            found.append(Spans([v for v, ok in zip(starts[row], keep, strict=False) if ok],
                               [v for v, ok in zip(ends[row], keep, strict=False) if ok],
                               [v for v, ok in zip(scores[row], keep, strict=False) if ok], null[row]))
    return found


def decode_spans(
    start: np.ndarray, end: np.ndarray, topk: int, max_answer_len: int, undesired_tokens: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k best (start, end) spans of one chunk: start ≤ end < start + max_answer_len (the pipeline's code, but for
    a chunk of exactly k candidates: there the pipeline's `argpartition(…, k)` raises — 'kth out of bounds', a
    chunk of n tokens where the pipeline asks n² spans, `top_k * 2 + 10` when aligning to words — and this sorts
    them all, as the pipeline does where it has fewer than k)."""
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = np.array([np.argmax(scores_flat)])
    elif len(scores_flat) <= topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    # Kept as the pipeline has it: `nonzero()` of the 2-D mask is (rows, columns), so the row indices (all 0)
    # also count as allowed positions and a span at position 0 passes the filter.
    allowed = undesired_tokens.nonzero()
    desired = np.isin(starts, allowed) & np.isin(ends, allowed)
    starts, ends = starts[desired], ends[desired]
    return starts, ends, candidates[0, starts, ends]


def decode_spans_banded(
    start: np.ndarray, end: np.ndarray, topk: int, max_answer_len: int, undesired_tokens: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`decode_spans` without the T × T outer product: only the spans it can keep (start ≤ end < start +
    max_answer_len) are scored, a T × max_answer_len band (384 × 15 rather than 384 × 384). Each band entry is the
    same single product, in the same row-major order, so the best spans are the same; where fewer spans score
    above zero than are asked for, the full product decides which zero-score spans fill up, as it always did."""
    length = start.shape[-1]
    width = min(max_answer_len, length)
    padded_end = np.concatenate([end[0], np.zeros(width - 1, dtype=end.dtype)])
    band = start[0][:, None] * np.lib.stride_tricks.sliding_window_view(padded_end, width)[:length]
    scores_flat = band.ravel()
    if np.count_nonzero(scores_flat) < topk or scores_flat.size <= topk:  # (the latter: no k-th to partition at)
        return decode_spans(start, end, topk, max_answer_len, undesired_tokens)
    if topk == 1:
        idx_sort = np.array([np.argmax(scores_flat)])
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, offsets = np.divmod(idx_sort, width)
    ends = starts + offsets
    # decode_spans' filter as a lookup: the positions `nonzero()` names, and position 0 whenever there is any (the
    # row indices of the 2-D mask, all 0, count as positions there).
    allowed = undesired_tokens[0] != 0
    if allowed.any():
        allowed[0] = True
    desired = allowed[starts] & allowed[ends]
    return starts[desired], ends[desired], scores_flat[idx_sort[desired]]


def select_starts_ends(start: np.ndarray, end: np.ndarray, allowed: np.ndarray, top_k: int,
                       max_answer_len: int) -> Spans:
    """One chunk's spans on the host, as the pipeline computes them: `start`, `end` its logits, `allowed` its tokens
    that may start or end an answer."""
    undesired_tokens = allowed.astype(np.int64)[None, :]
    blocked = undesired_tokens == 0
    start = np.where(blocked, MASKED_LOGIT, start[None, :])
    end = np.where(blocked, MASKED_LOGIT, end[None, :])
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    null = (start[0, 0] * end[0, 0]).item()
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = decode_spans_banded(start, end, top_k, max_answer_len, undesired_tokens)
    return Spans(starts.tolist(), ends.tolist(), scores.tolist(), null)
