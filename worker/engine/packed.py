"""DistilBERT's encoder on packed sequences.

The linear layers — Q/K/V/output projections and the feed-forward network, ~95 % of the FLOPs — run on the real
tokens of all rows of a pass concatenated, so no padding is computed there, whatever the mix of lengths. The forward
uses the loaded model's own modules and weights (inference only: no dropout), and equals
`DistilBertModel.forward` with an attention mask up to float rounding; `tests/unit/worker/engine/test_packed.py`
compares the two.

Attention sees the rows in one of three layouts (`worker/engine/runtime.py`'s `Attention` says which a device gets):
- `varlen`, a GPU's in half precision: FlashAttention over the packed tokens themselves, told where each row starts:
  one call a layer, no padding, no mask, no scatter or gather, and no plan per pass shape (cuDNN's masked attention
  planned each new shape again: ~30 ms of host time a pass on the H200).
- `padded`: the rows padded to the longest of the pass, the padding masked out of the keys, in one call a layer
  (a GPU's in float32, which FlashAttention lacks; cuDNN's attention is left out for the reason above).
- `per-row`, the CPU's: each row on its own, no padding, no mask, no scatter or gather; the call overhead is small
  there, and this is 5–10 % faster a pass (unmasked attention takes the fused kernel). The rows of one length that
  lie together (the planner sorts a pass's rows by length) attend in one call: their tokens are already that call's
  unpadded layout, and each row's result is bit for bit its own call's; a 500-row pass of the tiny checkpoint has
  ~60 lengths, so ~60 calls a layer rather than 500.
A pass whose rows all have one length is its own padded layout and runs as one unmasked call, padded or per row.

`keep` lets a caller that needs the final states of a few tokens only (fill-mask: the mask positions) skip the
last layer's output projection and feed-forward network everywhere else: every token's keys and values are still
computed, so the kept states are exactly those of the full pass.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import DistilBertModel

from worker.engine.runtime import Attention

#: The padded layout's attention backends: all but cuDNN's, which plans every new pass shape again.
_PADDED_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


@dataclass(frozen=True)
class PackedPass:
    """One forward pass: its rows' tokens concatenated, and where each token sits when padded for attention."""

    #: Indices into the caller's sequences, in the order their tokens are packed.
    rows: list[int]
    lengths: list[int]
    #: (tokens,) token ids and position ids of every row, one after another.
    input_ids: torch.Tensor
    positions: torch.Tensor
    #: (tokens,) each token's index in the (rows × longest) padded layout attention uses.
    slots: torch.Tensor
    #: (rows, 1, 1, longest) True at real tokens: which keys each row may attend to.
    key_mask: torch.Tensor
    #: (rows + 1,) int32: where each row starts in the packed tokens, and their total (FlashAttention's cu_seqlens).
    starts: torch.Tensor

    @property
    def longest(self) -> int:
        return max(self.lengths)

    @property
    def uniform(self) -> bool:
        """Whether every row is as long as the longest: then the packed tokens are the padded layout, and attention
        needs no scatter, no gather and no mask (QA's chunks of a long context are all max_seq_len long)."""
        return min(self.lengths) == self.longest

    def attention_padded(self, attention: Attention) -> bool:
        """Whether `encode` runs attention on this pass's rows padded to the longest (else on its real tokens)."""
        return attention == "padded" and not self.uniform

    @functools.cached_property
    def runs(self) -> list[tuple[int, int]]:
        """(rows, length) of each run of consecutive rows of one length, in packed order."""
        return [(len(list(run)), length) for length, run in itertools.groupby(self.lengths)]

    @property
    def offsets(self) -> list[int]:
        """Where each row's tokens start in the packed tokens, and (last) their total."""
        starts = [0]
        for length in self.lengths:
            starts.append(starts[-1] + length)
        return starts


@dataclass(frozen=True)
class TokenRows:
    """Rows of token ids as one flat array and where each row starts: what `pack` cuts passes from, and how a batch's
    ids cross to a device process (`worker/engine/device_process.py`) — an array pickles as its bytes, a list of ints
    as an object each: 512 QA pairs' chunks (750,000 ids) read back in 0.1 ms rather than 15."""

    ids: np.ndarray  # (tokens,) int32
    starts: np.ndarray  # (rows + 1,) int64: row i is ids[starts[i]:starts[i + 1]]

    @classmethod
    def of(cls, sequences: Sequence[Sequence[int]]) -> TokenRows:
        starts = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences)), out=starts[1:])
        ids = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int32, count=int(starts[-1]))
        return cls(ids, starts)

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, row: int) -> np.ndarray:
        return self.ids[self.starts[row]: self.starts[row + 1]]

    def lengths(self) -> list[int]:
        lengths: list[int] = np.diff(self.starts).tolist()
        return lengths

    def take(self, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of `rows`, one after another (int64), and their lengths: a few NumPy calls, whatever the rows."""
        chosen = np.asarray(rows, dtype=np.int64)
        firsts, sizes = self.starts[chosen], self.starts[chosen + 1] - self.starts[chosen]
        ends = np.cumsum(sizes)
        # Each taken token's index: its row's first index, plus its place in the taken tokens less its row's start.
        where = np.repeat(firsts - (ends - sizes), sizes) + np.arange(int(ends[-1]) if len(ends) else 0)
        return self.ids[where].astype(np.int64), sizes


def pack(sequences: TokenRows, rows: list[int]) -> PackedPass:
    """The pass of `rows` (indices into `sequences`), on the CPU. NumPy builds it: `torch.tensor` of a Python list
    costs ~60 ns a token, `np.fromiter` ~15 (once, in `TokenRows.of`), and a Python loop of `arange` per row more
    than both."""
    ids, sizes = sequences.take(rows)
    lengths: list[int] = sizes.tolist()
    longest, total = int(sizes.max()), int(sizes.sum())
    row_of_token = np.repeat(np.arange(len(rows)), sizes)
    positions = np.arange(total) - (np.cumsum(sizes) - sizes)[row_of_token]
    key_mask = (np.arange(longest)[None, :] < sizes[:, None])[:, None, None, :]
    starts = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(sizes, out=starts[1:])
    return PackedPass(rows, lengths, torch.from_numpy(ids), torch.from_numpy(positions),
                      torch.from_numpy(row_of_token * longest + positions), torch.from_numpy(key_mask),
                      torch.from_numpy(starts))


def moved(batch: PackedPass, move: Callable[[torch.Tensor], torch.Tensor]) -> PackedPass:
    """The same pass with each tensor passed through `move`, e.g. a pinned, non-blocking copy to the GPU."""
    return PackedPass(batch.rows, batch.lengths, move(batch.input_ids), move(batch.positions), move(batch.slots),
                      move(batch.key_mask), move(batch.starts))


def _padded(packed: torch.Tensor, batch: PackedPass, heads: int) -> torch.Tensor:
    """(tokens, dim) → (rows, heads, longest, head_dim), zeros at padding."""
    rows, longest, dim = len(batch.lengths), batch.longest, packed.shape[-1]
    padded = packed.new_zeros(rows * longest, dim)
    padded[batch.slots] = packed
    return padded.view(rows, longest, heads, dim // heads).transpose(1, 2)


def _attend_per_row(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, batch: PackedPass, heads: int,
                    scale: float) -> torch.Tensor:
    """(tokens, dim) projections → (tokens, dim) attention outputs, each row attending over its own tokens; the
    rows of one run of equal lengths in one call."""
    runs = batch.runs
    sizes = [count * length for count, length in runs]
    outputs = []
    for (count, length), q, k, v in zip(runs, *(projected.split(sizes) for projected in (query, key, value)),
                                        strict=True):
        q, k, v = (t.view(count, length, heads, -1).transpose(1, 2) for t in (q, k, v))
        outputs.append(functional.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2)
                       .reshape(count * length, -1))
    return torch.cat(outputs) if len(outputs) > 1 else outputs[0]


def flash_varlen(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, starts: torch.Tensor, longest: int,
                 scale: float) -> torch.Tensor:
    """(tokens, heads, head_dim) → the same: each row (`starts`, int32 cumulative lengths) attending over its own
    tokens, by torch's FlashAttention kernel. Called as `torch.nn.attention.varlen.varlen_attn` calls it, not through
    that function: some releases of it choose cuDNN's kernel on Hopper cards, which plans each new shape."""
    output: torch.Tensor = torch.ops.aten._flash_attention_forward(
        query, key, value, starts, starts, longest, longest, 0.0, False, False, scale=scale)[0]
    return output


def _attend_varlen(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, batch: PackedPass, heads: int,
                   scale: float) -> torch.Tensor:
    """(tokens, dim) projections → (tokens, dim) attention outputs: FlashAttention over the packed rows."""
    tokens = query.shape[0]
    q, k, v = (projected.view(tokens, heads, -1) for projected in (query, key, value))
    return flash_varlen(q, k, v, batch.starts, batch.longest, scale).reshape(tokens, -1)


def _attend_padded(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """(rows, heads, longest, head_dim) → the same; on CUDA by any backend but cuDNN's. (On the CPU the choice is
    moot, and choosing costs ~20 µs a call: a one-row pass of the tiny checkpoint is a few such calls.)"""
    if not query.is_cuda:
        return functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale)
    with sdpa_kernel(_PADDED_BACKENDS):
        return functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale)


def encode(model: DistilBertModel, batch: PackedPass, keep: torch.Tensor | None = None,
           attention: Attention = "padded") -> torch.Tensor:
    """Final hidden states, (tokens, dim) in packed order — or, given `keep` (indices into the packed tokens), of
    those tokens only, in that order. `attention`: the layout attention sees the rows in (above)."""
    # transformers types submodules as `Tensor | Module`; these are the modules DistilBertModel defines.
    embeddings: Any = model.embeddings
    layers: Any = model.transformer.layer
    hidden = embeddings.LayerNorm(
        embeddings.word_embeddings(batch.input_ids) + embeddings.position_embeddings(batch.positions)
    )
    rows, longest, uniform = len(batch.lengths), batch.longest, batch.uniform
    for index, layer in enumerate(layers):
        module = layer.attention
        heads, scale = module.n_heads, module.scaling
        if attention == "varlen":
            context = _attend_varlen(module.q_lin(hidden), module.k_lin(hidden), module.v_lin(hidden), batch, heads,
                                     scale)
        elif uniform:
            query, key, value = (projected.view(rows, longest, heads, -1).transpose(1, 2) for projected in
                                 (module.q_lin(hidden), module.k_lin(hidden), module.v_lin(hidden)))
            context = _attend_padded(query, key, value, scale).transpose(1, 2).reshape(rows * longest, -1)
        elif attention == "padded":
            query, key, value = (_padded(projected, batch, heads) for projected in
                                 (module.q_lin(hidden), module.k_lin(hidden), module.v_lin(hidden)))
            context = _attend_padded(query, key, value, scale, batch.key_mask)
            context = context.transpose(1, 2).reshape(rows * longest, -1)[batch.slots]
        else:
            context = _attend_per_row(module.q_lin(hidden), module.k_lin(hidden), module.v_lin(hidden), batch, heads,
                                      scale)
        if keep is not None and index == len(layers) - 1:
            context, hidden = context[keep], hidden[keep]
        hidden = layer.sa_layer_norm(module.out_lin(context) + hidden)
        ffn = layer.ffn
        hidden = layer.output_layer_norm(ffn.lin2(ffn.activation(ffn.lin1(hidden))) + hidden)
    return hidden
