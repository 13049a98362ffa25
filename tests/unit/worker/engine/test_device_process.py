"""The device process (`DISTILQ_DEVICE_PROCESS`): a worker's engines with their device stage in a child process
give the outputs the same engines give in the worker's own; the worker never loads the weights; an error of a
batch there is that batch's; a device process that dies is reported, one that cannot load its model says why."""

from __future__ import annotations

import gc
import json
import os
import pickle
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.evaluations import SCORE_PSEUDO_LOG_LIKELIHOOD
from contract.requests import QuestionAnsweringParameters
from core.settings import Settings
from core.tasks import TASK_FILL_MASK, TASK_QUESTION_ANSWERING
from worker.engine import EngineLost, JobPayload
from worker.engine.device_process import DeviceProcess, RemoteEngine, _load
from worker.engine.registry import EngineRegistry

QA_CASES = json.loads((Path(__file__).parents[3] / "fixtures" / "qa_reference.json").read_text("utf-8"))["cases"]
FILL_MASK_JOBS = [
    JobPayload({"input_string": ["Paris is the [MASK] of France.", "Paris [MASK] the [MASK] of France."]},
               {"top_k": 5}),
    JobPayload({"input_string": ["Today is a [MASK] day!"]}, {"top_k": 3, "targets": ["day", "Paris", "capital"]}),
    JobPayload({"input_string": ["The river flows north through the [MASK] of the old kingdom " * 6]}, {"top_k": 12}),
    JobPayload({"input_string": ["The river flows north."]},
               {"top_k": 1, "score": SCORE_PSEUDO_LOG_LIKELIHOOD, "seed": 7, "line": 3}),
]
QA_JOBS = [JobPayload({"question": [case["question"]], "context": [case["context"]]},
                      QuestionAnsweringParameters.model_validate(case["parameters"]).model_dump())
           for case in QA_CASES]


def _settings(models: dict[str, Path], **changes: Any) -> Settings:
    given: dict[str, Any] = {"fill_mask_model": str(models["fill-mask"]), "qa_model": str(models["question-answering"]),
                             "device": "cpu", "torch_threads": 1, "max_batch_size": 4, "max_batch_tokens": 4096}
    return Settings(**{**given, **changes})


@pytest.fixture(scope="module")
def remote(tiny_models: dict[str, Path]) -> Iterator[EngineRegistry]:
    registry = EngineRegistry(_settings(tiny_models, device_process=True), [TASK_FILL_MASK, TASK_QUESTION_ANSWERING])
    yield registry
    registry.device_process.close()


@pytest.fixture(scope="module")
def local(tiny_models: dict[str, Path]) -> EngineRegistry:
    return EngineRegistry(_settings(tiny_models, device_process=False))


@pytest.mark.parametrize(("task", "jobs"), [(TASK_FILL_MASK, FILL_MASK_JOBS), (TASK_QUESTION_ANSWERING, QA_JOBS)])
def test_outputs_are_those_of_the_engine_in_the_worker_s_own_process(remote: EngineRegistry, local: EngineRegistry,
                                                                      task: str, jobs: list[JobPayload]) -> None:
    engine = remote.get(task)
    assert isinstance(engine, RemoteEngine)
    engine.phases.reset()
    outputs = engine.run(jobs)
    assert outputs == local.get(task).run(jobs)
    # The device's phases and counts come back with each batch.
    seconds, counts = engine.phases.reset()
    assert seconds["forward"] > 0 and seconds["postprocess"] > 0 and counts["rows"] >= len(jobs)


def test_the_worker_s_engines_never_load_the_weights(remote: EngineRegistry) -> None:
    for task in (TASK_FILL_MASK, TASK_QUESTION_ANSWERING):
        engine = remote.get(task)
        assert isinstance(engine, RemoteEngine)
        assert "model" not in vars(engine.host)  # the lazily loaded model, never asked for here
    assert remote.device_process.process.pid != os.getpid()


def test_a_question_answering_batch_is_sent_without_its_texts_and_offsets(local: EngineRegistry) -> None:
    """The device stage reads chunk ids, bounds and parameters; the texts and the context tokens' offsets stay with
    `finish` (for 512 of the bench's pairs: 1.6 MB of pickle rather than 6.2)."""
    engine = local.get(TASK_QUESTION_ANSWERING)
    prepared = engine.prepare(QA_JOBS)
    sent = pickle.dumps(engine.for_device(prepared))
    assert len(sent) < len(pickle.dumps(prepared)) / 2
    assert not any(case["context"].encode() in sent for case in QA_CASES)
    assert engine.detach(engine.infer([], engine.for_device(prepared))) == engine.detach(engine.infer([], prepared))


def test_an_error_of_a_batch_there_is_raised_here_and_the_next_batch_runs(remote: EngineRegistry) -> None:
    engine = remote.get(TASK_FILL_MASK)
    with pytest.raises(AttributeError):
        remote.device_process.infer(TASK_FILL_MASK, "not a prepared batch")
    [[output]] = engine.run(FILL_MASK_JOBS[1:2])
    assert len(output) == 3


def test_a_device_process_that_dies_is_reported_as_lost(tiny_models: dict[str, Path]) -> None:
    reasons: list[str] = []
    device = DeviceProcess(_settings(tiny_models), [TASK_FILL_MASK], on_lost=reasons.append)
    engine = EngineRegistry(_settings(tiny_models, device_process=False)).get(TASK_FILL_MASK)
    prepared = engine.prepare(FILL_MASK_JOBS[:1])
    assert device.infer(TASK_FILL_MASK, prepared)[0] == engine.detach(engine.infer([], prepared))
    assert device.process.pid is not None
    os.kill(device.process.pid, signal.SIGKILL)
    with pytest.raises(EngineLost):
        device.infer(TASK_FILL_MASK, prepared)
    assert reasons == [f"the device process is gone (status {-signal.SIGKILL})"]


def test_a_device_process_that_dies_between_batches_is_reported_at_once(tiny_models: dict[str, Path]) -> None:
    """The worker hears of it when it happens, not at its next batch: it exits, and its supervisor starts another."""
    lost = threading.Event()
    device = DeviceProcess(_settings(tiny_models), [TASK_FILL_MASK], on_lost=lambda reason: lost.set())
    assert device.process.pid is not None
    os.kill(device.process.pid, signal.SIGKILL)
    assert lost.wait(10)
    with pytest.raises(EngineLost):  # refused, or failed once the reader has let every batch sent go
        device.submit(TASK_FILL_MASK, None).result(10)


def test_batches_sent_before_the_first_is_answered_each_get_their_own_result(remote: EngineRegistry,
                                                                            local: EngineRegistry) -> None:
    """The batcher sends the next batch while the device process runs the one before (`Engine.start`)."""
    device = remote.device_process
    batches = [(TASK_FILL_MASK, FILL_MASK_JOBS[:2]), (TASK_QUESTION_ANSWERING, QA_JOBS[:5]),
               (TASK_FILL_MASK, FILL_MASK_JOBS[2:])]
    engines = {task: local.get(task) for task, _ in batches}
    prepared = [engines[task].prepare(jobs) for task, jobs in batches]
    pending = [device.submit(task, engines[task].for_device(ready))
               for (task, _), ready in zip(batches, prepared, strict=True)]
    for (task, jobs), ready, future in reversed(list(zip(batches, prepared, pending, strict=True))):
        found, seconds, _ = future.result(30)
        assert found == engines[task].detach(engines[task].infer(jobs, ready))
        assert seconds["device"] >= seconds["forward"] > 0  # the batch's whole time there, and its passes'


def test_a_device_process_killed_with_batches_sent_fails_each_and_is_reported_once(
        tiny_models: dict[str, Path]) -> None:
    reasons: list[str] = []
    device = DeviceProcess(_settings(tiny_models), [TASK_FILL_MASK], on_lost=reasons.append)
    engine = EngineRegistry(_settings(tiny_models, device_process=False)).get(TASK_FILL_MASK)
    sent = engine.for_device(engine.prepare(FILL_MASK_JOBS[2:3] * 64))
    pending = [device.submit(TASK_FILL_MASK, sent) for _ in range(3)]
    assert device.process.pid is not None
    os.kill(device.process.pid, signal.SIGKILL)
    for future in pending:
        with pytest.raises(EngineLost):
            future.result(30)
    assert reasons == [f"the device process is gone (status {-signal.SIGKILL})"]


def test_a_device_process_ends_with_its_worker_s_end_of_the_pipe(tiny_models: dict[str, Path]) -> None:
    device = DeviceProcess(_settings(tiny_models), [TASK_FILL_MASK])
    device.close()
    assert device.process.exitcode == 0


def test_closing_answers_the_batches_sent_first(tiny_models: dict[str, Path]) -> None:
    reasons: list[str] = []
    device = DeviceProcess(_settings(tiny_models), [TASK_FILL_MASK], on_lost=reasons.append)
    engine = EngineRegistry(_settings(tiny_models, device_process=False)).get(TASK_FILL_MASK)
    prepared = engine.prepare(FILL_MASK_JOBS)
    pending = [device.submit(TASK_FILL_MASK, engine.for_device(prepared)) for _ in range(2)]
    device.close()
    assert [future.result(0)[0] for future in pending] == [engine.detach(engine.infer([], prepared))] * 2
    assert device.process.exitcode == 0 and reasons == []
    with pytest.raises(EngineLost, match="closed"):  # refused, not left waiting for a reply that will not come
        device.submit(TASK_FILL_MASK, engine.for_device(prepared))


def test_a_model_the_device_process_cannot_load_is_named(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(RuntimeError, match="no-such-model"):
        DeviceProcess(_settings(tiny_models, fill_mask_model=str(missing)), [TASK_FILL_MASK])


def test_a_device_process_takes_its_loaded_models_out_of_full_collections(tiny_models: dict[str, Path]) -> None:
    gc.unfreeze()
    try:
        engines = _load(_settings(tiny_models), [TASK_FILL_MASK])  # what the device process does before it is ready
        assert list(engines) == [TASK_FILL_MASK]
        assert gc.get_freeze_count() > 10_000  # every object alive then: torch's, transformers', the model's
    finally:
        gc.unfreeze()
