"""Where and how the models run: device and dtype resolution, loading, host→device copies."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import torch

from core.settings import ATTENTIONS, Attention
from worker.engine.batching import CPU_PASS_OVERHEAD_TOKENS, CUDA_PASS_OVERHEAD_TOKENS
from worker.engine.vocab_top_k import CPU_ROWS_PER_SLICE

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: Rows and padded tokens per forward pass when the settings leave them open: what fills the device. On a 2-core
#: CPU a pass of 32 rows already runs the matrix units at their rate; a GPU needs hundreds of rows to fill.
CPU_PASS_LIMITS = (32, 16_384)
CUDA_PASS_LIMITS = (512, 131_072)
_HALF = (torch.float16, torch.bfloat16)


def varlen_available(device: torch.device | None = None) -> bool:
    """Whether this torch was built with FlashAttention's CUDA kernels, and `device` (when CUDA is present to ask)
    is an Ampere or later card, which they need."""
    if not torch.backends.cuda.is_flash_attention_available():
        return False
    return device is None or not torch.cuda.is_available() or torch.cuda.get_device_capability(device) >= (8, 0)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype
    #: `DISTILQ_ATTENTION`: `auto`, or one of `Attention` (`resolve_runtime` checks it fits the device and dtype).
    attention_choice: str = "auto"

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

    @functools.cached_property
    def attention(self) -> Attention:
        """Row by row on the CPU (no padding; small calls cost little there). On CUDA in half precision, varlen:
        FlashAttention over the packed rows. Padded attention with a mask made cuDNN's attention plan each new pass
        shape again, ~30 ms a pass among 10 ms ones on the H200, and its scatter and gather cost 1.4 ms of 7.9 on the
        device (BENCHMARKS.md, session 30); FlashAttention has no float32 kernel, so float32 pads. Resolved once: a
        pass asks it several times, and asking CUDA for the card's capability each time is a call on the hot path."""
        if self.attention_choice != "auto":
            return self.attention_choice  # type: ignore[return-value]  # checked by resolve_runtime
        if not self.is_cuda:
            return "per-row"
        return "varlen" if self.dtype in _HALF and varlen_available(self.device) else "padded"


def resolve_runtime(device: str = "auto", dtype: str = "auto", attention: str = "auto") -> Runtime:
    """`auto` device is CUDA when present; `auto` dtype is float16 on CUDA (tensor cores) and float32 on the
    CPU, where half precision is slower and less exact; `auto` attention as `Runtime.attention` says."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if dtype == "auto":
        torch_dtype = torch.float16 if resolved.type == "cuda" else torch.float32
    elif dtype in _DTYPES:
        torch_dtype = _DTYPES[dtype]
    else:
        raise ValueError(f"DISTILQ_DTYPE must be auto, {', '.join(_DTYPES)}; got {dtype!r}")
    if attention not in ("auto", *ATTENTIONS):
        raise ValueError(f"DISTILQ_ATTENTION must be auto, {', '.join(ATTENTIONS)}; got {attention!r}")
    if attention == "varlen" and (resolved.type != "cuda" or torch_dtype not in _HALF
                                  or not varlen_available(resolved)):
        raise ValueError("DISTILQ_ATTENTION=varlen needs CUDA with FlashAttention (an Ampere or later card), and "
                         "float16 or bfloat16")
    return Runtime(resolved, torch_dtype, attention)


def configure_threads(threads: int | None = None, runtime: Runtime | None = None) -> None:
    """`threads` intra-op threads; else one on CUDA, one per core this process may use (its CPU affinity, not the
    machine's count) on the CPU. On CUDA the host's operators are small and a pool of threads spins beside each: on
    the H200 a fill-mask call took 132.8 CPU-ms with 16 threads and 42.6 with one, for the same wall (BENCHMARKS.md,
    session 30), CPU the API processes and the worker's own threads on that host want."""
    if threads is None and runtime is not None and runtime.is_cuda:
        threads = 1
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
