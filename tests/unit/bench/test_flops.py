"""The benchmark's FLOP counts against torch's own FLOP counter on real forward passes of the tiny checkpoint.

torch does not count the CPU's fused attention kernel, so attention is checked on transformers' eager attention
(plain matrix products), and the engines' counts are compared without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForMaskedLM, AutoModelForQuestionAnswering, AutoTokenizer

from bench.flops import Shape, card_peak_tflops, engine_flops, padded_passes_flops
from contract.requests import QuestionAnsweringParameters
from worker.engine import JobPayload
from worker.engine.fill_mask import FillMaskEngine
from worker.engine.question_answering import QuestionAnsweringEngine
from worker.engine.runtime import resolve_runtime

TEXTS = ["Paris is the [MASK] of France.", "Two [MASK] in one [MASK], and a few more words to pad the rest.",
         "[MASK]"]


def test_a_padded_forward_with_the_head_everywhere_is_what_the_pipeline_computes(
    tiny_models: dict[str, Path],
) -> None:
    directory = tiny_models["fill-mask"]
    model = AutoModelForMaskedLM.from_pretrained(directory, attn_implementation="eager").eval()
    padded = AutoTokenizer.from_pretrained(directory)(TEXTS, padding=True, return_tensors="pt")
    with FlopCounterMode(display=False) as counter:
        model(**padded)
    rows, longest = padded["input_ids"].shape
    shape = Shape.of(model.config)
    assert counter.get_total_flops() == padded_passes_flops(shape, [(rows, longest)], shape.mlm_head_per_token)


def without_attention(shape: Shape, counts: dict[str, int], total: float) -> float:
    return total - shape.layers * shape.attention_per_pair * counts["attention_pairs"]


def test_the_fill_mask_engine_computes_what_its_counters_say(tiny_models: dict[str, Path]) -> None:
    engine = FillMaskEngine(str(tiny_models["fill-mask"]), resolve_runtime("cpu"), 2, 4096)
    engine.phases.reset()
    with FlopCounterMode(display=False) as counter:
        engine.run([JobPayload({"input_string": TEXTS}, {"top_k": 3})])
    _, counts = engine.phases.reset()
    shape = Shape.of(engine.model.config)
    assert counts["kept_tokens"] == 4 and counts["rows"] == 3
    expected = engine_flops(shape, counts, shape.mlm_head_per_token, kept=True)
    assert counter.get_total_flops() == without_attention(shape, counts, expected)


def test_the_qa_engine_computes_what_its_counters_say(tiny_models: dict[str, Path]) -> None:
    directory = tiny_models["question-answering"]
    engine = QuestionAnsweringEngine(str(directory), resolve_runtime("cpu"), 4, 4096)
    parameters = QuestionAnsweringParameters().model_dump()
    jobs = [JobPayload({"question": ["Where is it?", "When?"],
                        "context": ["It is in Paris, by the river.", "In 1889, after two years of work."]},
                       parameters)]
    engine.phases.reset()
    with FlopCounterMode(display=False) as counter:
        engine.run(jobs)
    _, counts = engine.phases.reset()
    shape = Shape.of(AutoModelForQuestionAnswering.from_pretrained(directory).config)
    expected = engine_flops(shape, counts, shape.qa_head_per_token, kept=False)
    assert counter.get_total_flops() == without_attention(shape, counts, expected)


@pytest.mark.parametrize(("name", "peak"), [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
                                            ("NVIDIA A100-SXM4-40GB", 312.0), ("Tesla T4", 65.0),
                                            ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0), ("NVIDIA L40", None),
                                            ("NVIDIA A10G", None),
                                            ("Some Future GPU", None)])
def test_cards_are_matched_by_name(name: str, peak: float | None) -> None:
    assert card_peak_tflops(name) == peak
