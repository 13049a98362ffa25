"""Fill-mask on DistilBERT, equal to transformers' FillMaskPipeline, for the inputs of many jobs at once.

The encoder runs once per forward pass, packed (`worker/engine/packed.py`), its last layer finished at the mask
positions only; the MLM head (vocab transform, layer norm, 28996-wide projector) runs only at the mask positions
too, where the pipeline runs it at every token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForMaskedLM

from contract.tokens import target_ids
from core.tasks import TASK_FILL_MASK
from worker.engine import InputError, JobPayload
from worker.engine.detokenize import Detokenizer
from worker.engine.model_engine import ModelEngine, per_job
from worker.engine.packed import encode
from worker.engine.runtime import Runtime, to_device


@dataclass(frozen=True)
class _Prepared:
    """A batch tokenized and checked: its token ids, where each input's masks are, each input's (top_k,
    targets), and the seconds that took."""

    encoded: list[list[int]]
    positions: list[list[int]]
    requests: list[tuple[int, list[int] | None]]
    seconds: float


@dataclass(frozen=True)
class _Inferred:
    """A batch back from the device: for each input the rows of its masks, and per mask row its best (scores,
    token ids), on the host."""

    prepared: _Prepared
    rows_of_input: list[list[int]]
    selected: list[tuple[list[float], list[int]]]


class FillMaskEngine(ModelEngine):
    task = TASK_FILL_MASK

    def __init__(self, model_id: str, runtime: Runtime, max_batch_size: int, max_batch_tokens: int) -> None:
        super().__init__(AutoModelForMaskedLM, model_id, runtime, max_batch_size, max_batch_tokens)
        self.mask_id: int = self.tokenizer.mask_token_id
        self.max_tokens: int = self.model.config.max_position_embeddings
        self.backend = self.tokenizer.backend_tokenizer
        self.detokenizer = Detokenizer(self.tokenizer)

    def prepare(self, jobs: list[JobPayload]) -> _Prepared:
        started = time.perf_counter()
        texts = [text for job in jobs for text in job.input["input_string"]]
        # One call of the Rust tokenizer for the whole batch (parallel inside), not the Python wrapper.
        encoded: list[list[int]] = [e.ids for e in self.backend.encode_batch_fast(texts)]
        #: Per input, where its masks are: found once, on the host (nothing waits for the device for them).
        positions = [[i for i, token in enumerate(ids) if token == self.mask_id] for ids in encoded]
        for index, ids in enumerate(encoded):
            if not positions[index]:
                raise InputError(f"input {index} has no mask token {self.tokenizer.mask_token}")
            if len(ids) > self.max_tokens:
                raise InputError(f"input {index} has {len(ids)} tokens; the model takes {self.max_tokens}")
        return _Prepared(encoded, positions, self._requests(jobs), time.perf_counter() - started)

    def infer(self, jobs: list[JobPayload], prepared: Any) -> _Inferred:
        ready: _Prepared = prepared
        self.phases.add("tokenize", ready.seconds)
        states, rows_of_input = self._mask_states(ready.encoded, ready.positions)
        with self.phases.timed("head"):
            logits = self._head(states)
        with self.phases.timed("select"):
            with torch.inference_mode():
                probs = logits.float().softmax(dim=-1)
            selected = self._select(probs, rows_of_input, ready.requests)
        return _Inferred(ready, rows_of_input, selected)

    def finish(self, jobs: list[JobPayload], inferred: Any) -> list[list[Any]]:
        done: _Inferred = inferred
        ready = done.prepared
        return self._outputs(jobs, ready.encoded, ready.positions, done.rows_of_input, ready.requests, done.selected)

    def _requests(self, jobs: list[JobPayload]) -> list[tuple[int, list[int] | None]]:
        """Per input: its job's top_k and target ids (None: the whole vocabulary)."""
        requests: list[tuple[int, list[int] | None]] = []
        for job in jobs:
            top_k: int = job.parameters["top_k"]  # stored with every default filled in (contract/requests.py)
            targets = job.parameters.get("targets")
            ids = target_ids(self.backend, targets) if targets else None
            if ids is not None and not ids:
                raise InputError("no target of parameters.targets is a token of the model")
            requests += [(min(top_k, len(ids)) if ids else top_k, ids)] * len(job.input["input_string"])
        return requests

    @torch.inference_mode()
    def _mask_states(self, encoded: list[list[int]],
                     positions: list[list[int]]) -> tuple[torch.Tensor, list[list[int]]]:
        """The final hidden state at every mask, on the device, and for each input the rows of its masks (in
        position order). The encoder runs per pass, its last layer finished at the mask positions only. The masks'
        places come from the host, so nothing here waits for the device: on a GPU this loop queues pass after pass
        while the device runs."""
        states: list[torch.Tensor] = []
        rows_of_input: list[list[int]] = [[] for _ in encoded]
        row = 0
        for batch in self.passes(encoded):
            at_mask: list[int] = []  # places in the packed tokens
            for index, offset in zip(batch.rows, batch.offsets, strict=False):  # offsets has one more: the total
                at_mask += [offset + position for position in positions[index]]
                rows_of_input[index] = list(range(row, row + len(positions[index])))
                row += len(positions[index])
            with self.phases.timed("forward"):
                self.phases.count_kept(len(at_mask))
                keep = to_device(torch.tensor(at_mask, dtype=torch.long), self.runtime)
                states.append(encode(self.model.distilbert, batch, keep=keep))
        return torch.cat(states), rows_of_input

    @torch.inference_mode()
    def _head(self, states: torch.Tensor) -> torch.Tensor:
        """(masks × vocab) logits, on the device: the MLM head runs once per call over the masks of every pass,
        so its 28996 × 768 projector is read once."""
        model = self.model
        return model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(states))))

    @torch.inference_mode()
    def _select(self, probs: torch.Tensor, rows_of_input: list[list[int]],
                requests: list[tuple[int, list[int] | None]]) -> list[tuple[list[float], list[int]]]:
        """Per mask row: its best (scores, token ids), best first, from the softmax over the vocabulary that the
        pipeline takes (computed on the device, by the caller, under `torch.inference_mode`). Top-k runs on the
        device, once for every mask
        that ranks the whole vocabulary (at the largest top_k asked for), once per target set otherwise; each
        result comes back to the host in one copy."""
        selected: list[tuple[list[float], list[int]]] = [([], [])] * probs.shape[0]
        plain = sorted(r for rows, (_, targets) in zip(rows_of_input, requests, strict=True) if targets is None
                       for r in rows)
        if plain:
            k = max(top_k for rows, (top_k, targets) in zip(rows_of_input, requests, strict=True) if targets is None)
            picked = probs if len(plain) == probs.shape[0] else probs[torch.tensor(plain, device=probs.device)]
            values, indices = picked.topk(k)
            for r, row_values, row_indices in zip(plain, values.cpu().tolist(), indices.cpu().tolist(), strict=True):
                selected[r] = (row_values, row_indices)
        by_targets: dict[tuple[int, ...], list[int]] = {}
        for rows, (_, targets) in zip(rows_of_input, requests, strict=True):
            if targets is not None:
                by_targets.setdefault(tuple(targets), []).extend(rows)
        for targets_key, rows in by_targets.items():
            columns = torch.tensor(targets_key, device=probs.device)
            sub = probs[torch.tensor(rows, device=probs.device)][:, columns]
            values, indices = sub.topk(len(targets_key))
            for r, row_values, row_indices in zip(rows, values.cpu().tolist(), indices.cpu().tolist(), strict=True):
                selected[r] = (row_values, [targets_key[i] for i in row_indices])
        return selected

    def _outputs(self, jobs: list[JobPayload], encoded: list[list[int]], positions: list[list[int]],
                 rows_of_input: list[list[int]], requests: list[tuple[int, list[int] | None]],
                 selected: list[tuple[list[float], list[int]]]) -> list[list[Any]]:
        """FillMaskPipeline.postprocess for every input, from the selected rows and the token tables."""
        per_input = []
        for ids, places, rows, (top_k, _) in zip(encoded, positions, rows_of_input, requests, strict=True):
            single_mask = len(places) == 1
            propositions = []
            for position, row in zip(places, rows, strict=True):
                scores, tokens = selected[row]
                scores, tokens = scores[:top_k], tokens[:top_k]
                sequences = self.detokenizer.sequences(ids, position, tokens, skip_special_tokens=single_mask)
                propositions.append([
                    {"score": score, "token": token, "token_str": self.detokenizer.token_str(token),
                     "sequence": sequence}
                    for score, token, sequence in zip(scores, tokens, sequences, strict=True)
                ])
            per_input.append(propositions[0] if single_mask else propositions)
        return per_job(per_input, [len(job.input["input_string"]) for job in jobs])

    def warm_up(self) -> None:
        self.run([JobPayload({"input_string": [f"Warm {self.tokenizer.mask_token} up."]}, {"top_k": 1})])
