"""Fill-mask on DistilBERT, equal to transformers' FillMaskPipeline, for the inputs of many jobs at once.

The encoder runs once per forward pass, packed (`worker/engine/packed.py`), its last layer finished at the mask
positions only; the MLM head (vocab transform, layer norm, 28996-wide projector) runs only at the mask positions
too, where the pipeline runs it at every token.

An evaluation's plain-text example (`parameters.score`, set only by the evaluation store) is scored instead: its
pseudo-log-likelihood (every token masked in turn, one row each; Salazar et al. 2020) and its MLM negative
log-likelihood at the seeded masking of `evaluations.mlm_positions` (one row with those tokens masked together).
Its rows ride the same passes as the other inputs; their log-probabilities are gathered on the device.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForMaskedLM

from contract.evaluations import SCORE_PSEUDO_LOG_LIKELIHOOD
from contract.tokens import target_ids, tokenizer_fingerprint, unpack_token_ids
from core.tasks import TASK_FILL_MASK
from evaluations import mlm_positions
from worker.engine import InputError, JobPayload
from worker.engine.detokenize import Detokenizer
from worker.engine.model_engine import ModelEngine, per_job
from worker.engine.packed import TokenRows
from worker.engine.runtime import Runtime, to_device
from worker.engine.vocab_top_k import softmax_top_k


@dataclass(frozen=True)
class _Scoring:
    """The rows of the scored examples, after the inputs' rows: per scored job, its number of tokens and how many
    rows it has (one per token, then one for the MLM loss); per row, the token ids whose log-probabilities to
    gather at its masks."""

    jobs: list[int]
    tokens: list[int]
    targets: list[list[int]]


@dataclass(frozen=True)
class _Prepared:
    """A batch tokenized and checked: its token ids (the inputs', then the scored examples' rows), where each
    row's masks are, each input's (top_k, targets), the scored examples, and the seconds that took."""

    encoded: list[list[int]]
    positions: list[list[int]]
    requests: list[tuple[int, list[int] | None]]
    scoring: _Scoring
    seconds: float


@dataclass(frozen=True)
class _DeviceBatch:
    """What the device stage reads of a prepared batch (and a device process is sent): the rows' ids as one array
    (`TokenRows`: 512 inputs' read back in 0.1 ms rather than 1.1 as lists), each row's mask places, each input's
    (top_k, targets) and each scored row's targets."""

    encoded: TokenRows
    positions: list[list[int]]
    requests: list[tuple[int, list[int] | None]]
    targets: list[list[int]]
    seconds: float


@dataclass(frozen=True)
class _Inferred:
    """A batch back from the device: for each row the rows of its masks, per mask row of an input its best
    (scores, token ids), and per scored row the log-probabilities of its targets — on the host."""

    #: What `infer` was given: the prepared batch (in a device process, what `for_device` kept, which `detach`
    #: leaves behind and `attach` replaces with the prepared batch).
    prepared: _Prepared | _DeviceBatch
    rows_of_input: list[list[int]]
    selected: list[tuple[list[float], list[int]]]
    log_probs: list[list[float]]


def _places(ids: list[int], token: int) -> list[int]:
    """Where `token` is in `ids`, found by list methods (C loops; a comprehension costs a few µs an input)."""
    places: list[int] = []
    for _ in range(ids.count(token)):
        places.append(ids.index(token, places[-1] + 1 if places else 0))
    return places


class FillMaskEngine(ModelEngine):
    task = TASK_FILL_MASK

    def __init__(self, model_id: str, runtime: Runtime, max_batch_size: int, max_batch_tokens: int) -> None:
        super().__init__(AutoModelForMaskedLM, model_id, runtime, max_batch_size, max_batch_tokens)
        self.mask_id: int = self.tokenizer.mask_token_id
        self.max_tokens: int = self.config.max_position_embeddings
        self.backend = self.tokenizer.backend_tokenizer
        self.fingerprint = tokenizer_fingerprint(self.backend)
        self.detokenizer = Detokenizer(self.tokenizer)

    def prepare(self, jobs: list[JobPayload]) -> _Prepared:
        started = time.perf_counter()
        scored = [i for i, job in enumerate(jobs) if job.parameters.get("score") == SCORE_PSEUDO_LOG_LIKELIHOOD]
        asked = [job for i, job in enumerate(jobs) if i not in set(scored)] if scored else jobs
        encoded = self._token_ids(asked)
        #: Per input, where its masks are: found once, on the host (nothing waits for the device for them).
        positions = [_places(ids, self.mask_id) for ids in encoded]
        for index, ids in enumerate(encoded):
            if not positions[index]:
                raise InputError(f"input {index} has no mask token {self.tokenizer.mask_token}")
            if len(ids) > self.max_tokens:
                raise InputError(f"input {index} has {len(ids)} tokens; the model takes {self.max_tokens}")
        scoring = self._scoring_rows([jobs[i] for i in scored], encoded, positions)
        return _Prepared(encoded, positions, self._requests(asked), _Scoring(scored, *scoring),
                         time.perf_counter() - started)

    def _token_ids(self, jobs: list[JobPayload]) -> list[list[int]]:
        """Every input's token ids: those the API's check stored with the job where its tokenizer is this one (by
        fingerprint), the rest from one call of the Rust tokenizer (parallel inside), not the Python wrapper."""
        given = [unpack_token_ids(job.token_ids, self.fingerprint, len(job.input["input_string"])) for job in jobs]
        texts = [text for job, ids in zip(jobs, given, strict=True) if ids is None
                 for text in job.input["input_string"]]
        made = iter([e.ids for e in self.backend.encode_batch_fast(texts)] if texts else [])
        return [one for job, ids in zip(jobs, given, strict=True)
                for one in (ids if ids is not None else [next(made) for _ in job.input["input_string"]])]

    def _scoring_rows(self, jobs: list[JobPayload], encoded: list[list[int]],
                      positions: list[list[int]]) -> tuple[list[int], list[list[int]]]:
        """Appends each scored example's rows to `encoded` and `positions`: its tokens masked one at a time, then
        its seeded 15 % masked together. Returns per example its number of tokens, and per row its targets."""
        tokens: list[int] = []
        targets: list[list[int]] = []
        texts = [job.input["input_string"][0] for job in jobs]
        for job, encoding in zip(jobs, self.backend.encode_batch_fast(texts), strict=True):
            ids = encoding.ids
            real = [p for p, special in enumerate(encoding.special_tokens_mask) if not special]
            if not real or len(ids) > self.max_tokens or self.mask_id in ids:
                raise InputError(f"a scored text must have 1 to {self.max_tokens - 2} tokens and no mask token")
            for place in real:
                encoded.append([*ids[:place], self.mask_id, *ids[place + 1:]])
                positions.append([place])
                targets.append([ids[place]])
            masked = [real[k] for k in mlm_positions(len(real), job.parameters["seed"], job.parameters["line"])]
            encoded.append([self.mask_id if p in masked else token for p, token in enumerate(ids)])
            positions.append(masked)
            targets.append([ids[p] for p in masked])
            tokens.append(len(real))
        return tokens, targets

    def for_device(self, prepared: Any) -> _DeviceBatch:
        ready: _Prepared = prepared
        return _DeviceBatch(TokenRows.of(ready.encoded), ready.positions, ready.requests, ready.scoring.targets,
                            ready.seconds)

    def infer(self, jobs: list[JobPayload], prepared: Any) -> _Inferred:
        """From the prepared batch, or what `for_device` kept of it (then the result holds that in its place)."""
        batch = prepared if isinstance(prepared, _DeviceBatch) else self.for_device(prepared)
        self.phases.add("tokenize", batch.seconds)
        states, rows_of_input = self._mask_states(batch.encoded, batch.positions)
        with self.phases.timed("head"):
            logits = self._head(states)
        asked = len(batch.requests)
        selected: list[tuple[list[float], list[int]]] = []
        if asked:  # (the passes order rows by length: the inputs' rows are not the first ones)
            selected = self._select(logits, rows_of_input[:asked], batch.requests)
        log_probs = self._gather(logits, rows_of_input[asked:], batch.targets)
        return _Inferred(prepared, rows_of_input, selected, log_probs)

    def detach(self, inferred: Any) -> tuple[list[list[int]], list[tuple[list[float], list[int]]], list[list[float]]]:
        done: _Inferred = inferred
        return done.rows_of_input, done.selected, done.log_probs

    def attach(self, prepared: Any, found: Any) -> _Inferred:
        return _Inferred(prepared, *found)

    @torch.inference_mode()
    def _gather(self, logits: torch.Tensor, rows: list[list[int]], targets: list[list[int]]) -> list[list[float]]:
        """Per scored row, the log-probabilities of its targets at its masks: one gather on the device, one copy
        back."""
        if not rows:
            return []
        flat_rows = torch.tensor([r for row in rows for r in row], device=logits.device)
        flat_targets = torch.tensor([t for row in targets for t in row], device=logits.device)
        with self.phases.timed("select"):
            gathered = logits[flat_rows].float().log_softmax(dim=-1).gather(1, flat_targets[:, None])[:, 0]
        values = gathered.cpu().tolist()
        out, start = [], 0
        for row in rows:
            out.append(values[start: start + len(row)])
            start += len(row)
        return out

    def finish(self, jobs: list[JobPayload], inferred: Any) -> list[list[Any]]:
        done: _Inferred = inferred
        ready, asked = done.prepared, len(done.prepared.requests)
        assert isinstance(ready, _Prepared), "finished from the prepared batch (`attach`)"
        scored = set(ready.scoring.jobs)
        answered = iter(self._outputs([job for i, job in enumerate(jobs) if i not in scored], ready.encoded[:asked],
                                      ready.positions[:asked], done.rows_of_input[:asked], ready.requests,
                                      done.selected))
        scores = iter(self._scores(ready.scoring.tokens, done.log_probs))
        return [next(scores) if i in scored else next(answered) for i in range(len(jobs))]

    @staticmethod
    def _scores(tokens: list[int], log_probs: list[list[float]]) -> list[list[Any]]:
        """Per scored example (one input): its pseudo-log-likelihood over its `tokens` rows, and the MLM loss's
        sum and count over its last row."""
        outputs, row = [], 0
        for count in tokens:
            mlm = log_probs[row + count]
            outputs.append([{"pseudo_log_likelihood": sum(p for r in log_probs[row: row + count] for p in r),
                             "tokens": count, "mlm_nll": -sum(mlm), "mlm_masked": len(mlm)}])
            row += count + 1
        return outputs

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
    def _mask_states(self, encoded: TokenRows,
                     positions: list[list[int]]) -> tuple[torch.Tensor, list[list[int]]]:
        """The final hidden state at every mask, on the device, and for each input the rows of its masks (in
        position order). The encoder runs per pass, its last layer finished at the mask positions only. The masks'
        places come from the host, so nothing here waits for the device: on a GPU this loop queues pass after pass
        while the device runs."""
        states: list[torch.Tensor] = []
        rows_of_input: list[list[int]] = [[] for _ in range(len(encoded))]
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
                states.append(self.encode(batch, keep=keep))
        return torch.cat(states), rows_of_input

    @torch.inference_mode()
    def _head(self, states: torch.Tensor) -> torch.Tensor:
        """(masks × vocab) logits, on the device: the MLM head runs once per call over the masks of every pass,
        so its 28996 × 768 projector is read once."""
        model = self.model
        return model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(states))))

    @torch.inference_mode()
    def _select(self, logits: torch.Tensor, rows_of_input: list[list[int]],
                requests: list[tuple[int, list[int] | None]]) -> list[tuple[list[float], list[int]]]:
        """Per mask row: its best (scores, token ids), best first, by the softmax over the vocabulary that the
        pipeline takes. The masks that rank the whole vocabulary go through `softmax_top_k` together (at the
        largest top_k asked for), each target set's masks through a softmax of their own; each result comes back to
        the host in one copy."""
        selected: list[tuple[list[float], list[int]]] = [([], [])] * logits.shape[0]
        plain = sorted(r for rows, (_, targets) in zip(rows_of_input, requests, strict=True) if targets is None
                       for r in rows)
        if plain:
            k = max(top_k for rows, (top_k, targets) in zip(rows_of_input, requests, strict=True) if targets is None)
            picked = logits if len(plain) == logits.shape[0] else logits[torch.tensor(plain, device=logits.device)]
            with self.phases.timed("select"):
                values, indices = softmax_top_k(picked.float(), k, self.runtime.rows_per_slice)
            for r, row_values, row_indices in zip(plain, values.cpu().tolist(), indices.cpu().tolist(), strict=True):
                selected[r] = (row_values, row_indices)
        by_targets: dict[tuple[int, ...], list[int]] = {}
        for rows, (_, targets) in zip(rows_of_input, requests, strict=True):
            if targets is not None:
                by_targets.setdefault(tuple(targets), []).extend(rows)
        for targets_key, rows in by_targets.items():
            columns = torch.tensor(targets_key, device=logits.device)
            with self.phases.timed("select"):
                sub = logits[torch.tensor(rows, device=logits.device)].float().softmax(dim=-1)[:, columns]
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

    def warm_up(self, inputs: int | None = None) -> None:
        """`inputs` (default `warm_up_inputs`) sentences of 4 to 68 words, in one call."""
        texts = [f"Warm {self.tokenizer.mask_token} up" + " again" * (i % 65) + "."
                 for i in range(inputs or self.warm_up_inputs())]
        self.run([JobPayload({"input_string": texts}, {"top_k": 1})])
