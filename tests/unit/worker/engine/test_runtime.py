"""The GPU path, as far as it runs without a GPU: device and dtype resolution, threads, loading with SDPA in the
requested dtype, and both engines end to end in half precision (bfloat16 runs on the CPU too), which is where a
missing cast back to float32 would break (NumPy has no bfloat16; softmax in half precision drifts)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from contract.requests import QuestionAnsweringParameters
from worker.engine import JobPayload
from worker.engine.batching import CPU_PASS_OVERHEAD_TOKENS, CUDA_PASS_OVERHEAD_TOKENS
from worker.engine.fill_mask import FillMaskEngine
from worker.engine.question_answering import QuestionAnsweringEngine
from worker.engine.runtime import (
    Runtime,
    configure_threads,
    load_model,
    resolve_runtime,
    to_device,
    varlen_available,
)


def test_auto_picks_cuda_when_present_and_float32_on_the_cpu() -> None:
    runtime = resolve_runtime()
    if torch.cuda.is_available():
        assert (runtime.device.type, runtime.dtype) == ("cuda", torch.float16)
    else:
        assert (runtime.device, runtime.dtype) == (torch.device("cpu"), torch.float32)
        assert runtime.pass_overhead_tokens == CPU_PASS_OVERHEAD_TOKENS
        assert runtime.attention == "per-row"  # the CPU runs attention row by row


def test_a_named_gpu_gets_half_precision_and_the_gpu_pass_cost() -> None:
    runtime = resolve_runtime("cuda:1")
    assert runtime.device == torch.device("cuda", 1)
    assert runtime.dtype == torch.float16
    assert runtime.is_cuda and runtime.pass_overhead_tokens == CUDA_PASS_OVERHEAD_TOKENS
    # A GPU runs each pass in one call: FlashAttention over the packed rows where this torch has it.
    assert runtime.attention == ("varlen" if varlen_available() else "padded")
    assert resolve_runtime("cuda", "float32").attention == "padded"  # FlashAttention has no float32 kernel


@pytest.mark.parametrize(("name", "dtype"), [("bfloat16", torch.bfloat16), ("float32", torch.float32),
                                             ("float16", torch.float16)])
def test_an_explicit_dtype_is_honoured_on_any_device(name: str, dtype: torch.dtype) -> None:
    assert resolve_runtime("cuda", name).dtype == dtype
    assert resolve_runtime("cpu", name).dtype == dtype


def test_an_unknown_dtype_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="DISTILQ_DTYPE"):
        resolve_runtime("cpu", "int4")


def test_threads_follow_the_cores_this_process_may_use() -> None:
    before = torch.get_num_threads()
    try:
        configure_threads()
        assert torch.get_num_threads() == len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)


def test_on_cuda_one_thread_unless_set() -> None:
    """On CUDA the host's operators are small: one intra-op thread, not one spinning per core."""
    before = torch.get_num_threads()
    cuda = Runtime(torch.device("cuda", 0), torch.float16)  # a description only: no CUDA needed to ask it
    try:
        configure_threads(None, cuda)
        assert torch.get_num_threads() == 1
        configure_threads(2, cuda)
        assert torch.get_num_threads() == 2
        configure_threads(None, resolve_runtime("cpu"))
        assert torch.get_num_threads() == len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)


def test_an_attention_layout_is_honoured_where_it_can_run_and_refused_by_name_where_not() -> None:
    assert resolve_runtime("cpu", attention="padded").attention == "padded"
    assert resolve_runtime("cuda", "float16", attention="per-row").attention == "per-row"
    with pytest.raises(ValueError, match="DISTILQ_ATTENTION=varlen needs CUDA"):
        resolve_runtime("cpu", attention="varlen")
    with pytest.raises(ValueError, match="DISTILQ_ATTENTION=varlen needs CUDA"):
        resolve_runtime("cuda", "float32", attention="varlen")
    with pytest.raises(ValueError, match="DISTILQ_ATTENTION must be"):
        resolve_runtime("cpu", attention="sparse")


def test_on_the_cpu_tensors_are_used_where_they_are() -> None:
    tensor = torch.arange(4)
    assert to_device(tensor, resolve_runtime("cpu")) is tensor


def test_models_load_with_sdpa_in_the_requested_dtype(tiny_models: dict[str, Path]) -> None:
    from transformers import AutoModelForMaskedLM

    model = load_model(AutoModelForMaskedLM, str(tiny_models["fill-mask"]), Runtime(torch.device("cpu"),
                                                                                  torch.bfloat16))
    assert model.config._attn_implementation == "sdpa"
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not model.training


HALF = Runtime(torch.device("cpu"), torch.bfloat16)


def test_fill_mask_in_half_precision_scores_close_to_float32(tiny_models: dict[str, Path]) -> None:
    texts = ["Paris is the [MASK] of France.", "Two [MASK] in one [MASK]."]
    job = JobPayload({"input_string": texts}, {"top_k": 3})
    [half] = FillMaskEngine(str(tiny_models["fill-mask"]), HALF, 8, 4096).run([job])
    full_engine = FillMaskEngine(str(tiny_models["fill-mask"]), resolve_runtime("cpu"), 8, 4096)
    # The float32 probability of every token the half-precision run proposed, to compare scores token by token.
    vocabulary = full_engine.model.config.vocab_size
    [everything] = full_engine.run([JobPayload({"input_string": texts}, {"top_k": vocabulary})])

    def by_token(rows: list[Any]) -> dict[int, float]:
        return {row["token"]: row["score"] for row in rows}

    pairs = [(half[0], everything[0])] + list(zip(half[1], everything[1], strict=True))
    for proposed, reference in pairs:
        assert len(proposed) == 3
        scores = by_token(reference)
        for row in proposed:
            assert isinstance(row["score"], float) and math.isfinite(row["score"])
            assert row["score"] == pytest.approx(scores[row["token"]], abs=2e-2)


def test_question_answering_in_half_precision_answers_from_the_context(tiny_models: dict[str, Path]) -> None:
    context = "The Eiffel Tower is in Paris. It was finished in 1889 and is 330 metres tall."
    parameters = QuestionAnsweringParameters(top_k=2).model_dump()
    job = JobPayload({"question": ["Where is the tower?"], "context": [context]}, parameters)
    [[answers]] = QuestionAnsweringEngine(str(tiny_models["question-answering"]), HALF, 8, 4096).run([job])
    assert len(answers) == 2
    for answer in answers:
        assert 0 <= answer["start"] <= answer["end"] <= len(context)
        assert answer["answer"] == context[answer["start"] : answer["end"]]
        assert isinstance(answer["score"], float) and 0 <= answer["score"] <= 1


def test_pass_limits_fill_the_device_unless_set() -> None:
    import torch

    cpu = resolve_runtime("cpu")
    cuda = Runtime(torch.device("cuda", 0), torch.float16)  # a description only: no CUDA needed to ask it
    assert cpu.pass_limits(None, None) == (32, 16_384)
    assert cuda.pass_limits(None, None) == (512, 131_072)
    assert cuda.pass_limits(64, None) == (64, 131_072) and cpu.pass_limits(8, 2048) == (8, 2048)


@pytest.mark.parametrize(("device", "chosen", "expected"), [
    ("cpu", None, False), ("cuda", None, True), ("cpu", True, True), ("cuda", False, False)])
def test_the_device_process_is_on_cuda_unless_the_settings_say(device: str, chosen: bool | None,
                                                                expected: bool) -> None:
    from core.settings import Settings
    from worker.engine.registry import EngineRegistry

    registry = EngineRegistry(Settings(device=device, device_process=chosen, torch_threads=1))
    assert registry.in_device_process is expected  # (a CUDA runtime is a description only: no CUDA needed)
