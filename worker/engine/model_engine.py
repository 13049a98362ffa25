"""What both engines share: a tokenizer and a model loaded with `from_pretrained`, the bounds of a forward pass,
and the loop that plans passes, packs them and moves them to the device.

The model's weights load on first use (`model`): an engine whose device stage runs in a device process
(`worker/engine/device_process.py`) prepares and finishes batches with its tokenizer and configuration alone, and never
loads them."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer

from worker.engine import StagedEngine
from worker.engine.batching import attention_width, plan_batches
from worker.engine.packed import PackedPass, TokenRows, encode, moved, pack
from worker.engine.phases import Phases
from worker.engine.runtime import Runtime, load_model, to_device


def per_job(outputs: list[Any], counts: list[int]) -> list[list[Any]]:
    """The outputs of every input of a batch, in order, cut back into one list per job of `counts` inputs."""
    per: list[list[Any]] = []
    cursor = 0
    for count in counts:
        per.append(outputs[cursor: cursor + count])
        cursor += count
    return per


class ModelEngine(StagedEngine):
    #: The task it serves: each engine's class names it.
    task: str

    def __init__(self, model_class: Any, model_id: str, runtime: Runtime, max_batch_size: int,
                 max_batch_tokens: int) -> None:
        self.runtime = runtime
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.model_class, self.model_id = model_class, model_id
        self.tokenizer = AutoTokenizer.from_pretrained(model_id)
        self.config = config = AutoConfig.from_pretrained(model_id)
        self.pad_id: int = self.tokenizer.pad_token_id
        # Attention unpadded (row by row, or varlen: `worker/engine/packed.py`): then padding costs a pass nothing,
        # and the planner weighs only the passes' own cost.
        self.attention_width = (attention_width(config.dim, config.hidden_dim) if runtime.attention == "padded"
                                else math.inf)
        self.phases = Phases()

    @functools.cached_property
    def model(self) -> Any:
        """The model on its device, loaded on first use (the engine's `warm_up`, or its first batch)."""
        return load_model(self.model_class, self.model_id, self.runtime)

    def warm_up_inputs(self) -> int:
        """Inputs of the warm-up call, of many lengths: on a GPU a whole pass's worth. Its kernels load on
        first use (attention's, the linear layers' at each size of a full pass): on the H200 a call's first passes
        took 0.5–0.7 s among 8–50 ms ones, 57 ms with every kernel loaded at start (BENCHMARKS.md, sessions 29 and 30),
        to be paid before the worker takes work rather than by its first batches. On the CPU, one."""
        return self.max_batch_size if self.runtime.is_cuda else 1

    def encode(self, batch: PackedPass, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's final states of a pass (`worker/engine/packed.py`), attention laid out as the device wants."""
        return encode(self.model.distilbert, batch, keep=keep, attention=self.runtime.attention)

    def passes(self, sequences: TokenRows) -> Iterator[PackedPass]:
        """Each planned forward pass of `sequences`, packed, on the device."""
        plan = plan_batches(sequences.lengths(), self.max_batch_size, self.max_batch_tokens,
                            self.runtime.pass_overhead_tokens, self.attention_width)
        for rows in plan:
            batch = pack(sequences, rows)
            self.phases.count_pass(batch.lengths, batch.attention_padded(self.runtime.attention))
            yield moved(batch, lambda tensor: to_device(tensor, self.runtime))
