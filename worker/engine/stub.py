"""A stub engine: the seam the batcher is tested through, as Dramatiq's `StubBroker` is for its workers.

It behaves like the real engines at their boundary — one output list per job, one entry per input, shaped as the
contract says (fill-mask: `top_k` predictions, a list per mask when an input has several; QA: an answer, a list
when `top_k` > 1), `InputError` for an input the model could not take — without a model. Its outputs are a pure
function of the input, so a test can compute what a job must hold. `delay_s` makes each call take that long, to
hold a batch on the "device" while a test acts, and `delay_per_input_s` that much longer per input (a pass's fixed
cost and each input's, as a real engine's); `calls` records the jobs of every call.
"""

from __future__ import annotations

import threading
import zlib
from typing import Any

from contract.evaluations import SCORE_PSEUDO_LOG_LIKELIHOOD
from core.tasks import TASK_FILL_MASK, TASK_QUESTION_ANSWERING, TASKS
from worker.engine import InputError, JobPayload, StagedEngine
from worker.engine.phases import Phases

#: The mask token of the stub's vocabulary, as in DistilBERT's.
MASK = "[MASK]"
#: Vocabulary size the stub draws token ids from.
VOCAB = 28996


def _score(*parts: object) -> float:
    """A stable pseudo-probability in (0, 1) for the given parts."""
    return (zlib.crc32(repr(parts).encode("utf-8")) % 9973 + 1) / 10_000


def fill_mask_output(text: str, top_k: int) -> list[Any]:
    """What the stub answers for one fill-mask input."""
    masks = text.count(MASK)
    if masks == 0:
        raise InputError(f"an input has no mask token {MASK}")
    rows = []
    for mask in range(masks):
        scores = sorted((_score(text, mask, rank) for rank in range(top_k)), reverse=True)
        row = []
        for rank, score in enumerate(scores):
            token = zlib.crc32(f"{text}|{mask}|{rank}".encode()) % VOCAB
            word = f"w{token}"
            row.append({"score": score, "token": token, "token_str": word,
                        "sequence": text.replace(MASK, word, 1) if masks == 1 else text})
        rows.append(row)
    return rows[0] if masks == 1 else rows


def scored_output(text: str) -> dict[str, Any]:
    """What the stub answers for an evaluation's plain-text example (`parameters.score`): a word is a token."""
    words = text.split()
    if not words or MASK in words:
        raise InputError("a scored text must have tokens and no mask token")
    return {"pseudo_log_likelihood": -sum(1 / _score(text, i) for i in range(len(words))) / 100,
            "tokens": len(words), "mlm_nll": 1 / _score(text), "mlm_masked": max(1, round(0.15 * len(words)))}


def question_answering_output(question: str, context: str, top_k: int) -> Any:
    """What the stub answers for one question/context pair: spans of the context's first words."""
    if not question.strip() or not context.strip():
        raise InputError("a question or context has no tokens")
    words = context.split()
    answers: list[dict[str, Any]] = []
    position = 0
    for rank in range(min(top_k, len(words))):
        start = context.index(words[rank], position)
        end = start + len(words[rank])
        position = end
        answers.append({"score": _score(question, context, rank) / (rank + 1), "start": start, "end": end,
                        "answer": context[start:end]})
    answers.sort(key=lambda answer: float(answer["score"]), reverse=True)
    return answers[0] if top_k == 1 else answers


class StubEngine(StagedEngine):
    """An engine of `task` with no model."""

    def __init__(self, task: str, delay_s: float = 0.0, delay_per_input_s: float = 0.0) -> None:
        if task not in TASKS:
            raise ValueError(f"no engine for task {task!r}")
        self.task = task
        self.delay_s = delay_s
        self.delay_per_input_s = delay_per_input_s
        self.phases = Phases()
        self.calls: list[list[JobPayload]] = []
        #: (thread name, jobs) of each `prepare`, `start` and `finish` call.
        self.prepared: list[tuple[str, list[JobPayload]]] = []
        self.started: list[tuple[str, list[JobPayload]]] = []
        self.finished: list[tuple[str, list[JobPayload]]] = []
        #: Set while a call is inside the engine; a test waits on it rather than sleeping.
        self.running = threading.Event()
        #: Cleared to hold calls inside the engine until it is set again.
        self.proceed = threading.Event()
        self.proceed.set()

    def prepare(self, jobs: list[JobPayload]) -> list[JobPayload]:
        """Nothing to tokenize; records which thread prepared which batch."""
        self.prepared.append((threading.current_thread().name, jobs))
        return jobs

    def start(self, prepared: Any) -> Any:
        """Nothing to hand over (the device stage runs in `infer`); records which thread started which batch."""
        self.started.append((threading.current_thread().name, prepared))
        return prepared

    def infer(self, jobs: list[JobPayload], prepared: Any) -> list[JobPayload]:
        jobs = prepared  # as a real engine, from the prepared batch alone (`Engine.infer`)
        self.calls.append(jobs)
        self.running.set()
        try:
            with self.phases.timed("forward"):
                self.proceed.wait()
                inputs = sum(len(job.input["input_string" if self.task == TASK_FILL_MASK else "question"])
                             for job in jobs)
                delay_s = self.delay_s + self.delay_per_input_s * inputs
                if delay_s:
                    threading.Event().wait(delay_s)
                for job in jobs:
                    if self.task == TASK_FILL_MASK:
                        texts = job.input["input_string"]
                        self.phases.count_pass([len(text.split()) for text in texts], padded=False)
            return jobs
        finally:
            self.running.clear()

    def finish(self, jobs: list[JobPayload], inferred: Any) -> list[list[Any]]:
        """The outputs; records which thread finished which batch."""
        self.finished.append((threading.current_thread().name, jobs))
        return [self._outputs(job) for job in jobs]

    def _outputs(self, job: JobPayload) -> list[Any]:
        top_k: int = job.parameters["top_k"]
        if self.task == TASK_FILL_MASK and job.parameters.get("score") == SCORE_PSEUDO_LOG_LIKELIHOOD:
            return [scored_output(job.input["input_string"][0])]
        if self.task == TASK_FILL_MASK:
            texts: list[str] = job.input["input_string"]
            return [fill_mask_output(text, top_k) for text in texts]
        assert self.task == TASK_QUESTION_ANSWERING
        pairs = list(zip(job.input["question"], job.input["context"], strict=True))
        return [question_answering_output(question, context, top_k) for question, context in pairs]

    def warm_up(self) -> None:
        """Nothing to warm."""
