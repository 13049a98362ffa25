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


@pytest.mark.parametrize("text", ["Paris [MASK] the [PAD] [MASK] of France.", "[PAD] [MASK] [SEP] [MASK] [PAD]",
                                  "[MASK] [PAD] [CLS] is here.", "[CLS] [PAD] [MASK] [UNK] [MASK]"])
def test_special_tokens_typed_in_the_text_match_the_pipeline(engine: FillMaskEngine, reference: Any,
                                                             text: str) -> None:
    """The pipeline leaves padding out of every sequence, and with one mask the other special tokens too."""
    [[output]] = engine.run([JobPayload({"input_string": [text]}, {"top_k": 12})])
    assert_same(output, reference(text, top_k=12))


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


def _checked(served: Any, texts: list[str]) -> bytes:
    """The token ids the API's check stores with a job of `texts`."""
    from api.model_inputs import check_fill_mask
    from contract.requests import FillMaskRequest
    from core.settings import Settings

    checked = check_fill_mask(FillMaskRequest.model_validate({"inputs": {"input_string": texts}}), served, Settings())
    assert checked.problems == [] and checked.token_ids is not None
    return checked.token_ids


@pytest.fixture(scope="module")
def served(tiny_models: dict[str, Path]) -> Any:
    from api.model_inputs import load_served_model

    return load_served_model(str(tiny_models["fill-mask"]))


UNICODE_TEXTS = ["naïve café owners serve [MASK] brûlée", "東京は[MASK]の首都です。", "Москва — [MASK] России.",
                 "Zürich,Genève\tand  Köln [MASK]!", "unknownish wordsing [MASK] reed"]


def test_the_api_s_check_stores_the_ids_this_engine_makes(engine: FillMaskEngine, served: Any) -> None:
    """The API loads tokenizer.json with `tokenizers` alone, the worker through transformers: one fingerprint, and
    the same ids for every text, so that the worker need not tokenize a job again."""
    from contract.tokens import unpack_token_ids

    texts = TEXTS + UNICODE_TEXTS
    assert served.fingerprint == engine.fingerprint
    stored = unpack_token_ids(_checked(served, texts), engine.fingerprint, len(texts))
    assert stored == [encoding.ids for encoding in engine.backend.encode_batch_fast(texts)]


def test_stored_ids_are_run_instead_of_the_text_when_the_fingerprint_is_the_engine_s(
        engine: FillMaskEngine, served: Any, reference: Any) -> None:
    """Ids the API stored are what the engine runs (here deliberately another text's: its predictions come out);
    ids of another tokenizer, or for another number of inputs, are ignored and the text is tokenized."""
    from contract.tokens import FINGERPRINT_BYTES

    other = _checked(served, [TEXTS[1], TEXTS[3]])
    [outputs] = engine.run([JobPayload({"input_string": [TEXTS[0], TEXTS[2]]}, {"top_k": 2}, other)])
    assert_same(outputs[0], reference(TEXTS[1], top_k=2))
    assert_same(outputs[1], reference(TEXTS[3], top_k=2))
    stranger = bytes(byte ^ 0xFF for byte in other[:FINGERPRINT_BYTES]) + other[FINGERPRINT_BYTES:]
    ignored = [JobPayload({"input_string": [TEXTS[0], TEXTS[2]]}, {"top_k": 2}, stranger),
               JobPayload({"input_string": [TEXTS[0]]}, {"top_k": 2}, other),
               JobPayload({"input_string": [TEXTS[2]]}, {"top_k": 2}, None)]
    outputs = engine.run(ignored)
    assert_same(outputs[0], [reference(TEXTS[0], top_k=2), reference(TEXTS[2], top_k=2)])
    assert_same(outputs[1], [reference(TEXTS[0], top_k=2)])
    assert_same(outputs[2], [reference(TEXTS[2], top_k=2)])


def test_a_batch_of_stored_and_unstored_ids_matches_the_pipeline(engine: FillMaskEngine, served: Any,
                                                                  reference: Any) -> None:
    jobs = [JobPayload({"input_string": [text]}, {"top_k": 3}, _checked(served, [text]) if i % 2 else None)
            for i, text in enumerate(TEXTS + UNICODE_TEXTS)]
    for job, [output] in zip(jobs, engine.run(jobs), strict=True):
        assert_same(output, reference(job.input["input_string"][0], top_k=3))


def test_warm_up_on_the_cpu_is_one_input_and_at_a_gpus_size_rows_of_many_lengths(engine: FillMaskEngine) -> None:
    engine.phases.reset()
    engine.warm_up()
    assert engine.warm_up_inputs() == 1  # a CPU has no kernels to load
    assert engine.phases.reset()[1]["rows"] == 1
    engine.warm_up(inputs=40)  # what a GPU engine of 40 rows a pass runs: its kernels at every size of a pass
    counts = engine.phases.reset()[1]
    assert counts["rows"] == 40
    assert counts["real_tokens"] > 40 * 40  # lengths up to ~70 tokens, not 40 copies of one short sentence
