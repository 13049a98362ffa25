"""Where and how the models run: device and dtype resolution, loading, host→device copies."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from worker.engine.batching import CPU_PASS_OVERHEAD_TOKENS, CUDA_PASS_OVERHEAD_TOKENS
from worker.engine.vocab_top_k import CPU_ROWS_PER_SLICE

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: Rows and padded tokens per forward pass when the settings leave them open: what fills the device. On a 2-core
#: CPU a pass of 32 rows already runs the matrix units at their rate; a GPU needs hundreds of rows to fill.
CPU_PASS_LIMITS = (32, 16_384)
CUDA_PASS_LIMITS = (512, 131_072)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def pass_limits(self, max_rows: int | None, max_tokens: int | None) -> tuple[int, int]:
        """(rows, padded tokens) per forward pass: those given, else this device's defaults."""
        rows, tokens = CUDA_PASS_LIMITS if self.is_cuda else CPU_PASS_LIMITS
        return max_rows or rows, max_tokens or tokens

    @property
    def rows_per_slice(self) -> int | None:
        """Rows of logits the softmax and top-k take at a time: a cache-sized slice on the CPU, all on a GPU."""
        return None if self.is_cuda else CPU_ROWS_PER_SLICE

    @property
    def pass_overhead_tokens(self) -> int:
        return CUDA_PASS_OVERHEAD_TOKENS if self.is_cuda else CPU_PASS_OVERHEAD_TOKENS

    @property
    def attention_per_row(self) -> bool:
        """Attention row by row (`worker/engine/packed.py`): on the CPU, not on a GPU."""
        return not self.is_cuda


def resolve_runtime(device: str = "auto", dtype: str = "auto") -> Runtime:
    """`auto` device is CUDA when present; `auto` dtype is float16 on CUDA (tensor cores) and float32 on the
    CPU, where half precision is slower and less exact."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if dtype == "auto":
        torch_dtype = torch.float16 if resolved.type == "cuda" else torch.float32
    elif dtype in _DTYPES:
        torch_dtype = _DTYPES[dtype]
    else:
        raise ValueError(f"DISTILQ_DTYPE must be auto, {', '.join(_DTYPES)}; got {dtype!r}")
    return Runtime(resolved, torch_dtype)


def configure_threads(threads: int | None = None) -> None:
    """`threads` inference threads, or one per core this process may use (its CPU affinity, not the machine's
    count)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads or max(1, cores))


def load_model(model_class: Any, model_id: str, runtime: Runtime) -> Any:
    """`from_pretrained` on a hub id or a local directory, with PyTorch's fused SDPA attention."""
    model = model_class.from_pretrained(model_id, dtype=runtime.dtype, attn_implementation="sdpa")
    return model.to(runtime.device).eval()


def to_device(tensor: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """On CUDA, copy from pinned host memory without blocking the host; on the CPU, nothing to do."""
    if not runtime.is_cuda:
        return tensor
    return tensor.pin_memory().to(runtime.device, non_blocking=True)
