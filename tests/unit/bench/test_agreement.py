"""`python -m bench.agreement`: generated cases, distilq's three paths on them, the pipeline's outputs from a venv's
script, and the verdict of each case."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from bench import agreement
from worker.engine.runtime import resolve_runtime

QA_ANSWER = {"score": 0.25, "start": 0, "end": 6, "answer": "Berlin"}


def test_the_cases_of_a_seed_are_the_same_each_time_and_hold_odd_text() -> None:
    words = ["Paris", "capital", "France", "Berlin"]
    for task in ("fill-mask", "question-answering"):
        cases = agreement.generate(task, 200, 7, words)
        assert cases == agreement.generate(task, 200, 7, words) != agreement.generate(task, 200, 8, words)
        texts = [case.get("text", "") + case.get("question", "") + case.get("context", "") for case in cases]
        assert any(odd in text for text in texts for odd in ("[CLS]", "\u200b", "中"))
        # Runs of cases with one set of parameters, which the batched path sends as jobs of several inputs.
        assert sum(a["parameters"] == b["parameters"] != {} for a, b in zip(cases, cases[1:], strict=False)) > 20
    assert all("[MASK]" in case["text"] for case in agreement.generate("fill-mask", 50, 1, words))


@pytest.mark.parametrize(("ours", "expected", "verdict"), [
    ({"stored": QA_ANSWER, "text": QA_ANSWER, "batched": QA_ANSWER}, QA_ANSWER, "agrees"),
    ({"stored": {**QA_ANSWER, "score": 0.25000001}}, QA_ANSWER, "agrees"),  # within the contract's 1e-4
    ({"stored": [QA_ANSWER]}, QA_ANSWER, "agrees as documented"),  # never unwrapped
    ({"refused": [{"loc": ["parameters"], "msg": "x"}]}, {"pipeline_error": "ValueError: stride"}, "agrees"),
    ({"refused": [{"loc": ["inputs", "question", 0], "msg": "has no tokens"}]}, QA_ANSWER, "agrees as documented"),
    ({"stored": {"input_error": "input 0: doc_stride"}}, {"pipeline_error": "PanicException"}, "agrees"),
    ({"stored": {**QA_ANSWER, "score": 0.26}}, QA_ANSWER, "stored:"),
    ({"stored": QA_ANSWER, "text": {**QA_ANSWER, "end": 7}}, QA_ANSWER, "text:"),
    ({"stored": {"input_error": "input 0: doc_stride"}}, QA_ANSWER, "stored: input error"),
    ({"text": {"engine_error": "ValueError: stride"}}, {"pipeline_error": "ValueError"}, "text: the engine failed"),
    ({"stored": QA_ANSWER}, {"pipeline_error": "ValueError"}, "stored: answers, where the pipeline fails"),
    ({"stored": QA_ANSWER}, {"pipeline_error": "ValueError: kth(=64) out of bounds (64)"}, "agrees as documented"),
    ({"refused": [{"loc": ["parameters", "top_k"], "msg": "too large"}]}, QA_ANSWER, "refused"),
])
def test_a_case_agrees_only_where_each_path_gives_the_pipelines_output(ours: dict[str, Any], expected: Any,
                                                                       verdict: str) -> None:
    assert agreement.verdict(ours, expected).startswith(verdict)


def test_fill_mask_cases_agree_with_the_pipeline_run_by_the_venv_script(tiny_models: dict[str, Path]) -> None:
    """The script the 4.57.6 venv runs, here on this venv's transformers 5, whose FillMaskPipeline is fill-mask's
    reference (`tests/unit/worker/engine/test_fill_mask.py`): every case agrees, on each of distilq's paths."""
    model, runtime = tiny_models["fill-mask"], resolve_runtime("cpu")
    cases = agreement.generate("fill-mask", 40, 3, agreement._words(model))
    mine = agreement.ours("fill-mask", model, cases, runtime)
    assert sum("batched" in result for result in mine) > 30  # most pass the check, and ran on all three paths
    theirs = agreement.reference(sys.executable, "fill-mask", model, cases, runtime)
    assert [agreement.verdict(a, b) for a, b in zip(mine, theirs, strict=True)] == ["agrees"] * len(cases)
