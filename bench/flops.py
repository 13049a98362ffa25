"""The floating-point work of DistilBERT forward passes, counted from the model's shape, and the peaks it is set
against: the matrix-multiply rate measured on this machine and, on a GPU, the card's dense tensor-core peak.

FLOPs are 2 × the multiply-adds of the matrix products (the linear layers, attention's two products, the heads);
element-wise work (layer norms, GELU, softmax) is left out, as in every FLOP/s figure.
`tests/unit/bench/test_flops.py` checks these counts against torch's own FLOP counter on real forward passes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

#: Dense (no sparsity) fp16/bf16 tensor-core peaks, TFLOP/s, from NVIDIA's datasheets; matched as whole words of
#: the device name ("L4" is not "L40S", "A10" would not be "A10G"), the first match winning. Others: `--peak-tflops`.
CARD_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0),
    ("V100", 125.0), ("T4", 65.0),
)


@dataclass(frozen=True)
class Shape:
    layers: int
    dim: int
    hidden: int
    vocab: int

    @classmethod
    def of(cls, config: Any) -> Shape:
        return cls(config.n_layers, config.dim, config.hidden_dim, config.vocab_size)

    @property
    def layer_per_token(self) -> int:
        """Q, K, V and output projections, then the feed-forward network."""
        return 2 * (4 * self.dim * self.dim + 2 * self.dim * self.hidden)

    @property
    def qkv_per_token(self) -> int:
        return 2 * 3 * self.dim * self.dim

    @property
    def attention_per_pair(self) -> int:
        """Scores and weighted sum, per (query, key) pair and layer."""
        return 4 * self.dim

    @property
    def mlm_head_per_token(self) -> int:
        """Vocab transform and the vocab-wide projector."""
        return 2 * (self.dim * self.dim + self.dim * self.vocab)

    @property
    def qa_head_per_token(self) -> int:
        return 2 * self.dim * 2


def padded_passes_flops(shape: Shape, passes: Iterable[tuple[int, int]], head_per_token: int) -> float:
    """Passes (rows, longest) padded to their longest row, as transformers runs them, with the head at every
    (padded) token — what the pipeline computes."""
    total = 0.0
    for rows, longest in passes:
        tokens = rows * longest
        total += shape.layers * (shape.layer_per_token * tokens + shape.attention_per_pair * rows * longest**2)
        total += head_per_token * tokens
    return total


def engine_flops(shape: Shape, counts: dict[str, int], head_per_token: int, kept: bool) -> float:
    """What distilq's engine computed, from its counters (`worker/engine/phases.py`): the linear layers on real
    tokens only; attention over each pass padded; with `kept`, the last layer finished — and the head applied —
    at the kept tokens only, else the head at every token."""
    tokens, pairs = counts["real_tokens"], counts["attention_pairs"]
    head_tokens = counts["kept_tokens"] if kept else tokens
    total = float(shape.layers * shape.attention_per_pair * pairs + head_per_token * head_tokens)
    if kept:
        last_layer = shape.qkv_per_token * tokens + (shape.layer_per_token - shape.qkv_per_token) * head_tokens
        return total + (shape.layers - 1) * shape.layer_per_token * tokens + last_layer
    return total + shape.layers * shape.layer_per_token * tokens


def card_peak_tflops(name: str) -> float | None:
    for card, peak in CARD_PEAK_TFLOPS:
        if re.search(rf"(?<![a-z0-9]){re.escape(card)}(?![a-z0-9])", name, re.IGNORECASE):
            return peak
    return None


def measured_matmul_flops(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """FLOP/s of a large matrix product of the encoder's own shape (tokens × dim → hidden) on `device`."""
    a = torch.randn(4096, 768, device=device, dtype=dtype)
    b = torch.randn(768, 3072, device=device, dtype=dtype)
    torch.mm(a, b)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        runs += 1
    return 2 * 4096 * 768 * 3072 * runs / (time.perf_counter() - started)


@dataclass(frozen=True)
class Peak:
    """The rate the modes' FLOP/s are set against, and what it is."""

    flops_per_s: float
    label: str


def peak_for(device: torch.device, dtype: torch.dtype, card_tflops: float | None = None) -> tuple[Peak, str]:
    """On a GPU, the card's dense peak (from the table, or `card_tflops`); on the CPU, or for an unknown card, the
    matrix-multiply rate measured here. Also a line saying what was measured."""
    kind = str(dtype).removeprefix("torch.")
    measured = measured_matmul_flops(device, dtype)
    line = f"measured {kind} matrix-multiply rate on {device}: {measured / 1e9:.1f} GFLOP/s"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        tflops = card_tflops or card_peak_tflops(name)
        if tflops is not None:
            return Peak(tflops * 1e12, f"{name}, dense fp16/bf16 peak {tflops:.0f} TFLOP/s"), f"{line} ({name})"
        line += f" ({name}: no datasheet peak known; pass --peak-tflops)"
    return Peak(measured, f"measured {kind} matrix-multiply rate, {measured / 1e9:.1f} GFLOP/s"), line
