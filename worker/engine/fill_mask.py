"""Fill-mask on DistilBERT, equal to transformers' FillMaskPipeline, for the inputs of many jobs at once.

The encoder runs once per forward pass, packed (`worker/engine/packed.py`), its last layer finished at the mask
positions only; the MLM head (vocab transform, layer norm, 28996-wide projector) runs only at the mask positions
too, where the pipeline runs it at every token.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import AutoModelForMaskedLM

from contract.tokens import target_ids
from core.tasks import TASK_FILL_MASK
from worker.engine import InputError, JobPayload
from worker.engine.model_engine import ModelEngine
from worker.engine.packed import encode
from worker.engine.runtime import Runtime


class FillMaskEngine(ModelEngine):
    task = TASK_FILL_MASK

    def __init__(self, model_id: str, runtime: Runtime, max_batch_size: int, max_batch_tokens: int) -> None:
        super().__init__(AutoModelForMaskedLM, model_id, runtime, max_batch_size, max_batch_tokens)
        self.mask_id: int = self.tokenizer.mask_token_id
        self.max_tokens: int = self.model.config.max_position_embeddings

    def run(self, jobs: list[JobPayload]) -> list[list[Any]]:
        texts = [text for job in jobs for text in job.input["input_string"]]
        with self.phases.timed("tokenize"):
            encoded: list[list[int]] = self.tokenizer(texts, return_attention_mask=False)["input_ids"]
        for index, ids in enumerate(encoded):
            if self.mask_id not in ids:
                raise InputError(f"input {index} has no mask token {self.tokenizer.mask_token}")
            if len(ids) > self.max_tokens:
                raise InputError(f"input {index} has {len(ids)} tokens; the model takes {self.max_tokens}")

        probs = self._mask_probabilities(encoded)

        with self.phases.timed("postprocess"):
            return self._outputs(jobs, encoded, probs)

    def _outputs(self, jobs: list[JobPayload], encoded: list[list[int]], probs: list[torch.Tensor]) -> list[list[Any]]:
        outputs: list[list[Any]] = []
        cursor = 0
        for job in jobs:
            top_k: int = job.parameters["top_k"]  # stored with every default filled in (contract/requests.py)
            targets = job.parameters.get("targets")
            targets_ids = (
                np.array(target_ids(self.tokenizer.backend_tokenizer, targets)) if targets else None
            )
            if targets_ids is not None and targets_ids.size == 0:
                raise InputError("no target of parameters.targets is a token of the model")
            job_outputs = []
            for _ in job.input["input_string"]:
                job_outputs.append(self._propositions(encoded[cursor], probs[cursor], top_k, targets_ids))
                cursor += 1
            outputs.append(job_outputs)
        return outputs

    @torch.inference_mode()
    def _mask_probabilities(self, encoded: list[list[int]]) -> list[torch.Tensor]:
        """Per input: a (masks × vocab) float32 tensor of softmax probabilities, on the CPU. The encoder runs per
        pass, its last layer finished at the mask positions only; the head runs once over the mask states of all
        passes, so its 28996 × 768 projector is read once per call rather than once per pass."""
        model = self.model
        states: list[torch.Tensor] = []
        owners: list[int] = []  # for each mask state, the input it belongs to
        for batch in self.passes(encoded):
            with self.phases.timed("forward"):
                at_mask = torch.nonzero(batch.input_ids == self.mask_id).squeeze(1)  # packed: input by input
                self.phases.count_kept(len(at_mask))
                states.append(encode(model.distilbert, batch, keep=at_mask))
            for row in batch.rows:
                owners += [row] * encoded[row].count(self.mask_id)
        with self.phases.timed("head"):
            logits = model.vocab_transform(torch.cat(states))
            logits = model.activation(logits)
            logits = model.vocab_layer_norm(logits)
            logits = model.vocab_projector(logits)
            probs = logits.float().softmax(dim=-1).cpu()
        result: list[torch.Tensor] = [torch.empty(0)] * len(encoded)
        start = 0
        while start < len(owners):
            end = start
            while end < len(owners) and owners[end] == owners[start]:
                end += 1
            result[owners[start]] = probs[start:end]
            start = end
        return result

    def _propositions(
        self, ids: list[int], probs: torch.Tensor, top_k: int, targets: np.ndarray | None
    ) -> list[Any]:
        """FillMaskPipeline.postprocess for one input."""
        if targets is not None:
            probs = probs[..., targets]
            top_k = min(top_k, int(targets.shape[0]))
        values, predictions = probs.topk(top_k)
        positions = [i for i, token in enumerate(ids) if token == self.mask_id]
        single_mask = len(positions) == 1
        rows = []
        for position, row_values, row_predictions in zip(
            positions, values.tolist(), predictions.tolist(), strict=True
        ):
            row = []
            for score, prediction in zip(row_values, row_predictions, strict=True):
                token = int(targets[prediction]) if targets is not None else prediction
                tokens = list(ids)
                tokens[position] = token
                sequence = self.tokenizer.decode(
                    [t for t in tokens if t != self.pad_id], skip_special_tokens=single_mask
                )
                row.append(
                    {"score": score, "token": token, "token_str": self.tokenizer.decode([token]),
                     "sequence": sequence}
                )
            rows.append(row)
        return rows[0] if single_mask else rows

    def warm_up(self) -> None:
        self.run([JobPayload({"input_string": [f"Warm {self.tokenizer.mask_token} up."]}, {"top_k": 1})])
