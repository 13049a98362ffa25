"""What both engines share: a tokenizer and a model loaded with `from_pretrained`, the bounds of a forward pass,
and the loop that plans sub-batches, pads them and moves them to the device."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from transformers import AutoTokenizer

from worker.engine.batching import pad, plan_batches
from worker.engine.phases import Phases
from worker.engine.runtime import Runtime, load_model, to_device


class ModelEngine:
    def __init__(self, model_class: Any, model_id: str, runtime: Runtime, max_batch_size: int,
                 max_batch_tokens: int) -> None:
        self.runtime = runtime
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(model_id)
        self.model = load_model(model_class, model_id, runtime)
        self.pad_id: int = self.tokenizer.pad_token_id
        self.phases = Phases()

    def padded_batches(self, sequences: list[list[int]]) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """(indices into `sequences`, input ids, attention mask) of each planned forward pass, on the device."""
        lengths = [len(ids) for ids in sequences]
        plan = plan_batches(lengths, self.max_batch_size, self.max_batch_tokens, self.runtime.pass_overhead_tokens)
        for rows in plan:
            ids, attention = pad([sequences[i] for i in rows], self.pad_id)
            self.phases.count(len(rows), int(attention.sum()), attention.numel())
            yield rows, to_device(ids, self.runtime), to_device(attention, self.runtime)
