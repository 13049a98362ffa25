"""The fill-mask engine against transformers' own FillMaskPipeline on the same checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import pipeline

from worker.engine import InputError, JobPayload
from worker.engine.fill_mask import FillMaskEngine
from worker.engine.runtime import resolve_runtime

TEXTS = [
    "Paris is the [MASK] of France.",
    "Today is a [MASK] day!",
    "München liegt in [MASK].",
    "Paris [MASK] the [MASK] of France.",
    "The quick brown fox jumps over the lazy dog and the river flows north through the [MASK] " * 4,
    "[MASK]",
]


@pytest.fixture(scope="module")
def engine(tiny_models: dict[str, Path]) -> FillMaskEngine:
    return FillMaskEngine(str(tiny_models["fill-mask"]), resolve_runtime("cpu"), 4, 4096)


@pytest.fixture(scope="module")
def reference(tiny_models: dict[str, Path]) -> Any:
    return pipeline("fill-mask", model=str(tiny_models["fill-mask"]), device="cpu")


def assert_same(actual: Any, expected: Any) -> None:
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_same(a, e)
        return
    assert (actual["token"], actual["token_str"], actual["sequence"]) == (
        expected["token"], expected["token_str"], expected["sequence"]
    )
    assert actual["score"] == pytest.approx(expected["score"], abs=1e-5)


@pytest.mark.parametrize("parameters", [{"top_k": 5}, {"top_k": 1}, {"top_k": 12}])
def test_matches_the_pipeline(engine: FillMaskEngine, reference: Any, parameters: dict[str, Any]) -> None:
    [outputs] = engine.run([JobPayload({"input_string": TEXTS}, parameters)])
    assert len(outputs) == len(TEXTS)
    for text, output in zip(TEXTS, outputs, strict=True):
        assert_same(output, reference(text, **parameters))


def test_targets_score_only_those_tokens(engine: FillMaskEngine, reference: Any) -> None:
    targets = ["Paris", "day", "capital", "Berlin", "Paris", "xyzzy"]  # a duplicate, and one outside the vocab
    [outputs] = engine.run([JobPayload({"input_string": TEXTS[:4]}, {"top_k": 3, "targets": targets})])
    for text, output in zip(TEXTS[:4], outputs, strict=True):
        assert_same(output, reference(text, top_k=3, targets=targets))


def test_jobs_batched_together_each_get_their_own_output(engine: FillMaskEngine, reference: Any) -> None:
    jobs = [
        JobPayload({"input_string": [TEXTS[0]]}, {"top_k": 2}),
        JobPayload({"input_string": TEXTS[1:4]}, {"top_k": 4, "targets": ["Paris", "day", "France"]}),
        JobPayload({"input_string": TEXTS[4:]}, {"top_k": 1}),
    ]
    outputs = engine.run(jobs)
    assert [len(o) for o in outputs] == [1, 3, 2]
    assert_same(outputs[0][0], reference(TEXTS[0], top_k=2))
    for text, output in zip(TEXTS[1:4], outputs[1], strict=True):
        assert_same(output, reference(text, top_k=4, targets=["Paris", "day", "France"]))
    for text, output in zip(TEXTS[4:], outputs[2], strict=True):
        assert_same(output, reference(text, top_k=1))


def test_prepared_and_finished_in_other_threads_the_outputs_are_the_same(engine: FillMaskEngine) -> None:
    """The batcher tokenizes the next batch in its claimer thread and makes the last one's outputs in its writer
    thread, while the engine runs the current one on the device."""
    import threading

    jobs = [JobPayload({"input_string": TEXTS[:3]}, {"top_k": 2}),
            JobPayload({"input_string": TEXTS[3:]}, {"top_k": 3, "targets": ["Paris", "day"]})]
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(engine.prepare(jobs)))
    thread.start()
    thread.join()
    engine.phases.reset()
    inferred = engine.infer(jobs, done[0])
    assert engine.phases.reset()[0]["tokenize"] > 0  # the prepared batch's tokenizing is still counted
    thread = threading.Thread(target=lambda: done.append(engine.finish(jobs, inferred)))
    thread.start()
    thread.join()
    assert done[1] == engine.run(jobs)


def test_one_input_is_never_unwrapped(engine: FillMaskEngine) -> None:
    [outputs] = engine.run([JobPayload({"input_string": [TEXTS[0]]}, {"top_k": 2})])
    assert isinstance(outputs, list) and len(outputs) == 1 and len(outputs[0]) == 2


def test_input_without_mask_is_an_input_error(engine: FillMaskEngine) -> None:
    with pytest.raises(InputError, match="input 1 has no mask"):
        engine.run([JobPayload({"input_string": [TEXTS[0], "no mask here"]}, {"top_k": 1})])
