"""The fill-mask engine's scoring of an evaluation's plain-text examples against transformers' masked-LM computed
independently here: every token masked in turn (pseudo-log-likelihood), and the seeded 15 % masked together (MLM
negative log-likelihood)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from contract.evaluations import SCORE_PSEUDO_LOG_LIKELIHOOD
from evaluations import mlm_positions
from tests.unit.worker.engine.test_fill_mask import assert_same
from worker.engine import InputError, JobPayload
from worker.engine.fill_mask import FillMaskEngine
from worker.engine.runtime import resolve_runtime

TEXTS = ["Paris is the capital of France.", "Today is a good day!", "München liegt in Bayern.", "Why"]


@pytest.fixture(scope="module")
def engine(tiny_models: dict[str, Path]) -> FillMaskEngine:
    return FillMaskEngine(str(tiny_models["fill-mask"]), resolve_runtime("cpu"), 4, 4096)


def scored(text: str, line: int, seed: int = 7) -> JobPayload:
    return JobPayload({"input_string": [text]}, {"top_k": 1, "score": SCORE_PSEUDO_LOG_LIKELIHOOD, "seed": seed,
                                                 "line": line})


def expected(model_dir: Path, text: str, line: int, seed: int = 7) -> dict[str, Any]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    ids = tokenizer(text, return_tensors="pt")["input_ids"][0]
    real = list(range(1, len(ids) - 1))  # [CLS] … [SEP]

    def log_probs(masked: list[int]) -> list[float]:
        row = ids.clone()
        row[masked] = tokenizer.mask_token_id
        with torch.no_grad():
            logits = model(input_ids=row[None]).logits[0]
        return [logits[p].log_softmax(-1)[ids[p]].item() for p in masked]

    pll = sum(log_probs([p])[0] for p in real)
    chosen = [real[k] for k in mlm_positions(len(real), seed, line)]
    return {"pseudo_log_likelihood": pll, "tokens": len(real), "mlm_nll": -sum(log_probs(chosen)),
            "mlm_masked": len(chosen)}


def test_scores_equal_the_masked_lm_computed_token_by_token(engine: FillMaskEngine,
                                                            tiny_models: dict[str, Path]) -> None:
    asked = JobPayload({"input_string": ["Paris is the [MASK] of France."]}, {"top_k": 3})
    jobs = [scored(TEXTS[0], 1), asked, *(scored(text, line) for line, text in enumerate(TEXTS[1:], start=2))]
    outputs = engine.run(jobs)
    assert_same(outputs[1], engine.run([asked])[0])  # an ordinary job in the same batch is not disturbed
    for line, (text, output) in enumerate(zip(TEXTS, [outputs[0], *outputs[2:]], strict=True), start=1):
        [actual] = output
        reference = expected(tiny_models["fill-mask"], text, line)
        assert (actual["tokens"], actual["mlm_masked"]) == (reference["tokens"], reference["mlm_masked"])
        assert actual["pseudo_log_likelihood"] == pytest.approx(reference["pseudo_log_likelihood"], abs=1e-4)
        assert actual["mlm_nll"] == pytest.approx(reference["mlm_nll"], abs=1e-4)


def test_the_masking_is_seeded_by_the_evaluation_and_the_line() -> None:
    assert mlm_positions(40, 7, 3) == mlm_positions(40, 7, 3)
    assert len(mlm_positions(40, 7, 3)) == 6 and len(mlm_positions(3, 7, 3)) == 1
    assert mlm_positions(40, 7, 3) != mlm_positions(40, 8, 3) or mlm_positions(40, 7, 3) != mlm_positions(40, 7, 4)


def test_a_scored_text_with_a_mask_or_no_token_is_an_input_error(engine: FillMaskEngine) -> None:
    with pytest.raises(InputError):
        engine.run([scored("Paris is the [MASK].", 1)])
    with pytest.raises(InputError):
        engine.run([scored("   ", 1)])
