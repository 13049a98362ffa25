"""Extractive question answering on DistilBERT, equal to transformers 4.57's QuestionAnsweringPipeline
(removed in transformers 5), for the question/context pairs of many jobs at once.

Long contexts become overlapping chunks (`doc_stride`); the chunks of every pair in the batch are sorted by
length and run together; each chunk's spans are scored with the pipeline's vectorised outer product and the
chunks of one pair are merged as the pipeline merges them.
"""

from __future__ import annotations

import operator
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer
from transformers import AutoModelForQuestionAnswering

from contract.requests import QuestionAnsweringParameters
from contract.tokens import (
    QA_LISTS_PER_PAIR,
    QA_SPECIAL_TOKENS,
    qa_chunk_count,
    tokenizer_fingerprint,
    unpack_token_arrays,
)
from core.tasks import TASK_QUESTION_ANSWERING
from worker.engine import InputError, JobPayload
from worker.engine.model_engine import ModelEngine, per_job
from worker.engine.packed import PackedPass, TokenRows
from worker.engine.runtime import Runtime, to_device
from worker.engine.spans import NO_NULL_SCORE, Spans, best_spans, padded_chunks, read_spans, select_starts_ends


@dataclass(frozen=True)
class _ContextTokens:
    """A chunk's context tokens as the API's check stored them (`contract.tokens.pack_qa_pairs`), in place of the
    tokenizer's Encoding: their character starts and ends, their word indices plus one (0: no word)."""

    context_start: int
    # Slices of the stored arrays (`contract.tokens.unpack_token_arrays`): read at a few answers' ends only.
    starts: Sequence[int]
    ends: Sequence[int]
    words: Sequence[int]
    #: Whether the words run in order (BERT's always do): then a word's tokens are found by bisection.
    ordered: bool = True

    def char_span(self, s: int, e: int, align_to_words: bool) -> tuple[int, int]:
        """As `_char_span` reads an Encoding: whole words (their tokens within this chunk), else the tokens' own
        offsets, (0, 0) for a special token. Where the words run in order, a word's first and last tokens are
        found by bisection, not by a scan of the chunk for each candidate span."""
        i, j = s - self.context_start, e - self.context_start
        words = self.words
        inside_i, inside_j = 0 <= i < len(words), 0 <= j < len(words)
        if align_to_words and inside_i and inside_j and words[i] and words[j]:
            if self.ordered:
                first, last = bisect_left(words, words[i], 0, i + 1), bisect_right(words, words[j], j) - 1
            else:
                first, last = words.index(words[i]), len(words) - 1 - words[::-1].index(words[j])
            return self.starts[first], self.ends[last]
        return (self.starts[i] if inside_i else 0), (self.ends[j] if inside_j else 0)


@dataclass
class Chunk:
    pair: int  # index of the question/context pair in the batch
    input_ids: list[int]
    #: Where the context's tokens start; they end before the last token (the closing [SEP]).
    context_start: int
    #: The tokenizer's encoding of the chunk, or its context tokens as the API stored them.
    encoding: Encoding | _ContextTokens

    def char_span(self, s: int, e: int, align_to_words: bool) -> tuple[int, int]:
        """Where tokens s..e lie in the context, in characters."""
        if isinstance(self.encoding, _ContextTokens):
            return self.encoding.char_span(s, e, align_to_words)
        return _char_span(self.encoding, s, e, align_to_words)


def _allowed(input_ids: np.ndarray, context_start: int, cls_id: int) -> np.ndarray:
    """Which tokens of a chunk may start or end an answer: the context's, and CLS wherever it is (the pipeline keeps
    it: models use it for "no answer")."""
    allowed = input_ids == cls_id
    allowed[context_start: len(input_ids) - 1] = True
    return allowed


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


@dataclass(frozen=True)
class _DeviceBatch:
    """What the device stage reads of a prepared batch: each chunk's ids (one array), pair and context start, and
    each pair's parameters — not the texts, nor the context tokens' offsets and words, which only `finish` reads.
    What a device process is sent: for the bench's 512 pairs 2.8 MB of pickle, read back in 0.1 ms, where the whole
    prepared batch was 6.2 MB and 64–110 ms to write and read (`python -m bench.device_transfer`)."""

    ids: TokenRows
    pairs: list[int]
    context_starts: list[int]
    params: list[dict[str, Any]]
    seconds: float


class QuestionAnsweringEngine(ModelEngine):
    task = TASK_QUESTION_ANSWERING

    def __init__(self, model_id: str, runtime: Runtime, max_batch_size: int, max_batch_tokens: int) -> None:
        super().__init__(AutoModelForQuestionAnswering, model_id, runtime, max_batch_size, max_batch_tokens)
        self.cls_id: int = self.tokenizer.cls_token_id
        self.sep_id: int = self.tokenizer.sep_token_id
        # A copy of its own: this engine sets truncation on it per call.
        self.backend = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
        self.backend.no_padding()
        self.fingerprint = tokenizer_fingerprint(self.backend)
        self._tokenizing = threading.Lock()
        self._check_pair_template()

    def _check_pair_template(self) -> None:
        """A chunk's context is found from its type ids (the context's tokens and the closing [SEP] are type 1),
        which the pipeline reads from sequence ids: a list of 384 Python objects per chunk. The two agree for
        BERT's pair template, which DistilBERT's tokenizers use; a tokenizer with another one is refused here."""
        encoding = self.backend.encode("Who?", "Here and there.")
        context = [i for i, sequence in enumerate(encoding.sequence_ids) if sequence == 1]
        start = encoding.type_ids.index(1)
        if context != list(range(start, len(encoding.ids) - 1)):
            raise ValueError("question answering needs BERT's pair template: [CLS] question [SEP] context [SEP], "
                             "the context and the last [SEP] of type 1")

    def prepare(self, jobs: list[JobPayload]) -> _Prepared:
        started = time.perf_counter()
        pairs: list[tuple[str, str, dict[str, Any]]] = [
            (question, context, job.parameters)
            for job in jobs
            for question, context in zip(job.input["question"], job.input["context"], strict=True)
        ]
        stored = [lists for job in jobs for lists in self._stored(job)]
        chunks = [chunk for pair, lists in enumerate(stored) if lists is not None
                  for chunk in self._stored_chunks(pair, lists, pairs[pair][2])]
        tokenize = [pair for pair, lists in enumerate(stored) if lists is None]
        if tokenize:
            with self._tokenizing:  # the tokenizer's truncation is set per call: one batch at a time
                chunks += self._chunks(pairs, tokenize)
        return _Prepared(pairs, chunks, time.perf_counter() - started)

    def _stored(self, job: JobPayload) -> list[list[array[int]] | None]:
        """Per pair of the job, what the API's check stored of it (`contract.tokens.pack_qa_pairs`), or None where
        it stored nothing this engine's tokenizer would have made — or where the question holds a CLS token (typed
        in its text): an answer may start or end at a CLS wherever it is, and the pipeline reads such a span's
        characters from the context's word of the same index as the question's word holding it
        (`Encoding.word_to_chars` with the question's word), which the stored context tokens cannot tell: that pair
        is tokenized here."""
        pairs = len(job.input["question"])
        lists = unpack_token_arrays(job.token_ids, self.fingerprint, QA_LISTS_PER_PAIR * pairs)
        if lists is None:
            return [None] * pairs
        stored = [lists[p * QA_LISTS_PER_PAIR:(p + 1) * QA_LISTS_PER_PAIR] for p in range(pairs)]
        return [None if self.cls_id in pair[0] else pair for pair in stored]

    def _stored_chunks(self, pair: int, lists: list[array[int]], params: dict[str, Any]) -> list[Chunk]:
        """The chunks of a pair from what the API stored, cut as the tokenizer's "only_second" truncation with
        stride and overflow cuts them: windows of the context of the room the question leaves, each starting
        `room - doc_stride` after the last, the last one ending with the context."""
        question, context, starts, ends, words = lists
        max_seq_len, doc_stride = params["max_seq_len"], params["doc_stride"]
        try:
            qa_chunk_count(len(question), len(context), max_seq_len, doc_stride)
        except ValueError as error:
            raise InputError(f"input {pair}: {error}") from error
        room = max_seq_len - len(question) - QA_SPECIAL_TOKENS
        windows = [(0, len(context))]
        if len(question) + len(context) + QA_SPECIAL_TOKENS > max_seq_len:
            windows = []
            for start in range(0, len(context), room - doc_stride):
                windows.append((start, min(start + room, len(context))))
                if windows[-1][1] == len(context):
                    break
        head, context_start = [self.cls_id, *question, self.sep_id], len(question) + 2
        ordered = all(map(operator.le, words, words[1:]))
        return [Chunk(pair, [*head, *context[start:stop], self.sep_id], context_start,
                      _ContextTokens(context_start, starts[start:stop], ends[start:stop], words[start:stop], ordered))
                for start, stop in windows]

    def for_device(self, prepared: Any) -> _DeviceBatch:
        ready: _Prepared = prepared
        chunks = ready.chunks
        return _DeviceBatch(TokenRows.of([chunk.input_ids for chunk in chunks]), [chunk.pair for chunk in chunks],
                            [chunk.context_start for chunk in chunks], [params for _, _, params in ready.pairs],
                            ready.seconds)

    def infer(self, jobs: list[JobPayload], prepared: Any) -> tuple[Any, list[Spans]]:
        """The prepared batch (or what `for_device` kept of it) and each chunk's candidate spans, on the host."""
        batch = prepared if isinstance(prepared, _DeviceBatch) else self.for_device(prepared)
        self.phases.add("tokenize", batch.seconds)
        return prepared, self._spans(batch)

    def detach(self, inferred: Any) -> list[Spans]:
        spans: list[Spans] = inferred[1]
        return spans

    def attach(self, prepared: Any, found: Any) -> tuple[_Prepared, list[Spans]]:
        return prepared, found

    def finish(self, jobs: list[JobPayload], inferred: Any) -> list[list[Any]]:
        ready, spans = inferred
        by_pair: dict[int, list[int]] = defaultdict(list)
        for index, chunk in enumerate(ready.chunks):
            by_pair[chunk.pair].append(index)
        answers = [
            self._answer(context, params, [(ready.chunks[i], spans[i]) for i in by_pair[pair]])
            for pair, (_, context, params) in enumerate(ready.pairs)
        ]
        return per_job(answers, [len(job.input["question"]) for job in jobs])

    def _chunks(self, pairs: list[tuple[str, str, dict[str, Any]]], which: list[int]) -> list[Chunk]:
        """The chunks of the pairs `which`: one call of the Rust tokenizer per (max_seq_len, doc_stride) in the
        batch, with its own truncation and overflow (stride) doing the chunking, as the pipeline's tokenizer call
        does."""
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index in which:
            params = pairs[index][2]
            groups[(params["max_seq_len"], params["doc_stride"])].append(index)
        chunks: list[Chunk] = []
        for (max_seq_len, doc_stride), members in groups.items():
            try:
                self.backend.enable_truncation(max_seq_len, stride=doc_stride, strategy="only_second")
                encodings = self.backend.encode_batch([(pairs[m][0], pairs[m][1]) for m in members])
            except BaseException as error:  # the tokenizers library refuses, or panics on, a stride it cannot honour
                self.backend.no_truncation()
                if isinstance(error, KeyboardInterrupt | SystemExit | GeneratorExit):
                    raise
                self._refuse_unsplittable(pairs, members, max_seq_len, doc_stride)
                raise
            self.backend.no_truncation()
            for member, encoding in zip(members, encodings, strict=True):
                # The question is whole in every chunk ("only_second" truncation): its context starts at one place.
                context_start = encoding.type_ids.index(1)
                chunks += [Chunk(member, chunk.ids, context_start, chunk)
                           for chunk in (encoding, *encoding.overflowing)]
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
    def _spans(self, ready: _DeviceBatch) -> list[Spans]:
        """Every chunk's candidate spans: scored on the device for all passes at once (`worker/engine/spans.py`),
        back to the host in one copy; a chunk with too few spans above zero from its logits, on the host."""
        lengths, context_starts = ready.ids.lengths(), ready.context_starts
        passes: list[tuple[PackedPass, torch.Tensor]] = []
        for batch in self.passes(ready.ids):
            with self.phases.timed("forward"):
                passes.append((batch, self.model.qa_outputs(self.encode(batch)).float()))
        order = [index for batch, _ in passes for index in batch.rows]  # the chunks' rows in the padded layout
        bounds = torch.tensor([(context_starts[i], lengths[i] - 1) for i in order])
        params = [ready.params[pair] for pair in ready.pairs]
        wanted = [_candidates(p) for p in params]
        k = max(wanted)
        by_length: dict[int, list[int]] = defaultdict(list)  # rows, by max_answer_len
        for row, index in enumerate(order):
            by_length[params[index]["max_answer_len"]].append(row)
        scored: list[tuple[list[int], torch.Tensor]] = []  # rows, their spans
        with self.phases.timed("select"):  # the device's part
            start, end, real, allowed = padded_chunks(passes, to_device(bounds, self.runtime), self.cls_id)
            for max_answer_len, rows in by_length.items():
                picked: slice | torch.Tensor = (slice(None) if len(rows) == len(order)
                                                else to_device(torch.tensor(rows), self.runtime))
                scored.append((rows, best_spans(start[picked], end[picked], real[picked], allowed[picked],
                                                max_answer_len, k)))
            spans_on_device = torch.cat([spans for _, spans in scored])
        table = spans_on_device.cpu().numpy()  # the one copy back
        rows = [row for rows, _ in scored for row in rows]
        found: list[Spans] = [Spans([], [], [], 0.0)] * len(lengths)
        for row, spans in zip(rows, read_spans(table, [wanted[order[row]] for row in rows]), strict=True):
            index = order[row]
            if spans is None:  # too few spans above zero: the pipeline's own arithmetic decides
                length = lengths[index]
                spans = select_starts_ends(start[row, :length].cpu().numpy(), end[row, :length].cpu().numpy(),
                                           _allowed(ready.ids[index], context_starts[index], self.cls_id),
                                           wanted[index], params[index]["max_answer_len"])
            found[index] = spans
        return found

    def _answer(self, context: str, params: dict[str, Any], chunks: list[tuple[Chunk, Spans]]) -> Any:
        """QuestionAnsweringPipeline.postprocess for one pair; a dict when top_k is 1, else a list."""
        top_k: int = params["top_k"]
        align_to_words: bool = params["align_to_words"]
        min_null_score = NO_NULL_SCORE
        answers: list[dict[str, Any]] = []
        #: The answer each lower-cased text merged into: the pipeline adds up the scores of answers whose texts
        #: differ only in case, keeping the first one's span.
        by_text: dict[str, dict[str, Any]] = {}
        for chunk, spans in chunks:
            min_null_score = min(min_null_score, spans.null)
            for s, e, score in zip(spans.starts, spans.ends, spans.scores, strict=True):
                start_index, end_index = chunk.char_span(s, e, align_to_words)
                text = context[start_index:end_index]
                lowered = text.lower()
                same = by_text.get(lowered)
                if same is not None:
                    same["score"] += score
                else:
                    answer = {"score": score, "start": start_index, "end": end_index, "answer": text}
                    answers.append(answer)
                    by_text[lowered] = answer
        if params["handle_impossible_answer"]:
            answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda answer: answer["score"], reverse=True)[:top_k]
        return answers[0] if top_k == 1 else answers

    def warm_up(self, inputs: int | None = None) -> None:
        """`inputs` (default `warm_up_inputs`) pairs whose contexts run from 3 to 600 words: short chunks (padded
        attention) and contexts of several full-length chunks."""
        params = QuestionAnsweringParameters().model_dump()
        contexts = ["Warm up now" + " again" * (i * 37 % 600) + "." for i in range(inputs or self.warm_up_inputs())]
        self.run([JobPayload({"question": ["Warm up?"] * len(contexts), "context": contexts}, params)])


def _candidates(params: dict[str, Any]) -> int:
    """Spans kept per chunk: more than top_k when aligning to words, which may merge candidates."""
    top_k: int = params["top_k"]
    return top_k * 2 + 10 if params["align_to_words"] else top_k
