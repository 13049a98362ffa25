"""Extractive question answering on DistilBERT, equal to transformers 4.57's QuestionAnsweringPipeline
(removed in transformers 5), for the question/context pairs of many jobs at once.

Long contexts become overlapping chunks (`doc_stride`); the chunks of every pair in the batch are sorted by
length and run together; each chunk's spans are scored with the pipeline's vectorised outer product and the
chunks of one pair are merged as the pipeline merges them.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer
from transformers import AutoModelForQuestionAnswering

from contract.requests import QuestionAnsweringParameters
from contract.tokens import qa_chunk_count
from core.tasks import TASK_QUESTION_ANSWERING
from worker.engine import InputError, JobPayload
from worker.engine.model_engine import ModelEngine, per_job
from worker.engine.packed import encode
from worker.engine.runtime import Runtime

#: What the pipeline writes over logits that cannot start or end an answer.
MASKED_LOGIT = -10000.0
#: The pipeline's starting "no answer" score: larger than any probability.
NO_NULL_SCORE = 1000000.0


@dataclass
class Chunk:
    pair: int  # index of the question/context pair in the batch
    input_ids: list[int]
    p_mask: np.ndarray  # 1 where a token cannot be part of an answer
    encoding: Encoding


def decode_spans(
    start: np.ndarray, end: np.ndarray, topk: int, max_answer_len: int, undesired_tokens: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k best (start, end) spans of one chunk: start ≤ end < start + max_answer_len."""
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = np.array([np.argmax(scores_flat)])
    elif len(scores_flat) < topk:
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
    if np.count_nonzero(scores_flat) < topk:
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


def select_starts_ends(
    start: np.ndarray,
    end: np.ndarray,
    p_mask: np.ndarray,
    min_null_score: float,
    top_k: int,
    handle_impossible_answer: bool,
    max_answer_len: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Softmax over the allowed positions of one (unpadded) chunk, then its best spans."""
    undesired_tokens = np.abs(p_mask - 1)[None, :] & np.ones_like(p_mask)[None, :]
    blocked = undesired_tokens == 0
    start = np.where(blocked, MASKED_LOGIT, start[None, :])
    end = np.where(blocked, MASKED_LOGIT, end[None, :])
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = decode_spans_banded(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def _char_span(encoding: Encoding, s: int, e: int, align_to_words: bool) -> tuple[int, int]:
    """Character span of tokens s..e in the context: widened to whole words, or the tokens' own offsets
    (also for tokens without a word, such as [CLS], as the pipeline falls back)."""
    if align_to_words:
        start_word, end_word = encoding.token_to_word(s), encoding.token_to_word(e)
        if start_word is not None and end_word is not None:
            start_chars = encoding.word_to_chars(start_word, sequence_index=1)
            end_chars = encoding.word_to_chars(end_word, sequence_index=1)
            if start_chars is not None and end_chars is not None:
                return start_chars[0], end_chars[1]
    return encoding.offsets[s][0], encoding.offsets[e][1]


@dataclass(frozen=True)
class _Prepared:
    """A batch tokenized: its (question, context, parameters) pairs, their chunks, and the seconds that took."""

    pairs: list[tuple[str, str, dict[str, Any]]]
    chunks: list[Chunk]
    seconds: float


class QuestionAnsweringEngine(ModelEngine):
    task = TASK_QUESTION_ANSWERING

    def __init__(self, model_id: str, runtime: Runtime, max_batch_size: int, max_batch_tokens: int) -> None:
        super().__init__(AutoModelForQuestionAnswering, model_id, runtime, max_batch_size, max_batch_tokens)
        self.cls_id: int = self.tokenizer.cls_token_id
        # A copy of its own: this engine sets truncation on it per call.
        self.backend = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
        self.backend.no_padding()
        self._tokenizing = threading.Lock()

    def prepare(self, jobs: list[JobPayload]) -> _Prepared:
        started = time.perf_counter()
        pairs: list[tuple[str, str, dict[str, Any]]] = [
            (question, context, job.parameters)
            for job in jobs
            for question, context in zip(job.input["question"], job.input["context"], strict=True)
        ]
        with self._tokenizing:  # the tokenizer's truncation is set per call: one batch at a time
            chunks = self._chunks(pairs)
        return _Prepared(pairs, chunks, time.perf_counter() - started)

    def infer(self, jobs: list[JobPayload], prepared: Any) -> tuple[_Prepared, list[tuple[np.ndarray, np.ndarray]]]:
        """The prepared batch and each chunk's (start, end) logits, on the host."""
        ready: _Prepared = prepared
        self.phases.add("tokenize", ready.seconds)
        with self.phases.timed("forward"):
            return ready, self._logits(ready.chunks)

    def finish(self, jobs: list[JobPayload], inferred: Any) -> list[list[Any]]:
        ready, logits = inferred
        return self._outputs(jobs, ready.pairs, ready.chunks, logits)

    def _outputs(
        self,
        jobs: list[JobPayload],
        pairs: list[tuple[str, str, dict[str, Any]]],
        chunks: list[Chunk],
        logits: list[tuple[np.ndarray, np.ndarray]],
    ) -> list[list[Any]]:
        by_pair: dict[int, list[int]] = defaultdict(list)
        for index, chunk in enumerate(chunks):
            by_pair[chunk.pair].append(index)

        answers = [
            self._answer(context, params, [(chunks[i], *logits[i]) for i in by_pair[pair]])
            for pair, (_, context, params) in enumerate(pairs)
        ]
        return per_job(answers, [len(job.input["question"]) for job in jobs])

    def _chunks(self, pairs: list[tuple[str, str, dict[str, Any]]]) -> list[Chunk]:
        """The chunks of every pair: one call of the Rust tokenizer per (max_seq_len, doc_stride) in the batch,
        with its own truncation and overflow (stride) doing the chunking, as the pipeline's tokenizer call does."""
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, (_, _, params) in enumerate(pairs):
            groups[(params["max_seq_len"], params["doc_stride"])].append(index)
        chunks: list[Chunk] = []
        for (max_seq_len, doc_stride), members in groups.items():
            self.backend.enable_truncation(max_seq_len, stride=doc_stride, strategy="only_second")
            try:
                encodings = self.backend.encode_batch([(pairs[m][0], pairs[m][1]) for m in members])
            except BaseException as error:  # the tokenizers library panics on a stride it cannot honour
                self.backend.no_truncation()
                if isinstance(error, KeyboardInterrupt | SystemExit | GeneratorExit):
                    raise
                self._refuse_unsplittable(pairs, members, max_seq_len, doc_stride)
                raise
            self.backend.no_truncation()
            for member, encoding in zip(members, encodings, strict=True):
                for chunk in (encoding, *encoding.overflowing):
                    input_ids = chunk.ids
                    p_mask = np.array([sequence != 1 for sequence in chunk.sequence_ids], dtype=np.int64)
                    p_mask[np.array(input_ids) == self.cls_id] = 0  # CLS stays: models use it for "no answer"
                    chunks.append(Chunk(member, input_ids, p_mask, chunk))
        return chunks

    def _refuse_unsplittable(self, pairs: list[tuple[str, str, dict[str, Any]]], members: list[int],
                             max_seq_len: int, doc_stride: int) -> None:
        """Raises InputError naming the first pair that cannot be split at this max_seq_len and doc_stride."""
        counted = self.backend.encode_batch_fast(
            [pairs[m][0] for m in members] + [pairs[m][1] for m in members], add_special_tokens=False)
        for position, member in enumerate(members):
            q_len, c_len = len(counted[position].ids), len(counted[len(members) + position].ids)
            try:
                qa_chunk_count(q_len, c_len, max_seq_len, doc_stride)
            except ValueError as error:
                raise InputError(f"input {member}: {error}") from error

    @torch.inference_mode()
    def _logits(self, chunks: list[Chunk]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Start and end logits of every chunk, float32 on the CPU."""
        result: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0), np.empty(0))] * len(chunks)
        for batch in self.passes([chunk.input_ids for chunk in chunks]):
            hidden = encode(self.model.distilbert, batch)
            logits = self.model.qa_outputs(hidden).float().cpu().numpy()  # (tokens, 2), packed
            offsets = batch.offsets
            for j, row in enumerate(batch.rows):
                result[row] = (logits[offsets[j] : offsets[j + 1], 0], logits[offsets[j] : offsets[j + 1], 1])
        return result

    def _answer(
        self, context: str, params: dict[str, Any], chunks: list[tuple[Chunk, np.ndarray, np.ndarray]]
    ) -> Any:
        """QuestionAnsweringPipeline.postprocess for one pair; a dict when top_k is 1, else a list."""
        top_k: int = params["top_k"]
        align_to_words: bool = params["align_to_words"]
        handle_impossible: bool = params["handle_impossible_answer"]
        pre_topk = top_k * 2 + 10 if align_to_words else top_k  # aligning to words may merge candidates
        min_null_score = NO_NULL_SCORE
        answers: list[dict[str, Any]] = []
        #: The answer each lower-cased text merged into: the pipeline adds up the scores of answers whose texts
        #: differ only in case, keeping the first one's span.
        by_text: dict[str, dict[str, Any]] = {}
        for chunk, start_logits, end_logits in chunks:
            starts, ends, scores, min_null_score = select_starts_ends(
                start_logits, end_logits, chunk.p_mask, min_null_score, pre_topk, handle_impossible,
                params["max_answer_len"],
            )
            for s, e, score in zip(starts.tolist(), ends.tolist(), scores.tolist(), strict=True):
                start_index, end_index = _char_span(chunk.encoding, s, e, align_to_words)
                text = context[start_index:end_index]
                same = by_text.get(text.lower())
                if same is not None:
                    same["score"] += score
                else:
                    answer = {"score": score, "start": start_index, "end": end_index, "answer": text}
                    answers.append(answer)
                    by_text[text.lower()] = answer
        if handle_impossible:
            answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda answer: answer["score"], reverse=True)[:top_k]
        return answers[0] if top_k == 1 else answers

    def warm_up(self) -> None:
        params = QuestionAnsweringParameters().model_dump()
        self.run([JobPayload({"question": ["Warm up?"], "context": ["Warm up now."]}, params)])
