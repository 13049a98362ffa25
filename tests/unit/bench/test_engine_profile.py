"""`python -m bench.engine_profile`: an engine's calls timed by phase (first, new shapes, the same again) and
profiled, here on the CPU with the tiny checkpoint (no device activity: the host's side of the profile)."""

from __future__ import annotations

from pathlib import Path

from bench import engine_profile
from worker.engine import JobPayload
from worker.engine.fill_mask import FillMaskEngine
from worker.engine.runtime import resolve_runtime


def test_an_engines_calls_are_timed_by_phase_and_profiled(tiny_models: dict[str, Path]) -> None:
    runtime = resolve_runtime("cpu")
    engine = FillMaskEngine(str(tiny_models["fill-mask"]), runtime, 4, 4096)
    jobs = [JobPayload({"input_string": [f"Paris is the [MASK] of France{' again' * i}."]}, {"top_k": 5})
            for i in range(4 * 8)]
    found = engine_profile.engine_profile(engine, jobs, batch=4, calls=2, runtime=runtime)
    assert len(found["first_ms"]) == 3 and all(ms > 0 for ms in found["first_ms"])
    assert 0 < found["new_ms"]["min"] <= found["new_ms"]["median"] <= found["new_ms"]["max"]
    assert found["again_ms"]["min"] > 0 and found["new_cpu_ms"]["median"] > 0
    remote = found["device_process"]  # the same calls through a device process: its own time within each call's
    assert 0 < remote["device_process_ms"] <= remote["wall_ms"]["max"]
    shown = found["profile"]
    assert shown["calls"] == 3 and shown["wall_ms"] > 0
    assert shown["kernel_ms"] == 0 and shown["launches"] == 0  # no device here
    operators = {name for name, _, _ in shown["host_ops"]}
    assert "aten::addmm" in operators  # the linear layers, each call's biggest host operator on a CPU
    lines = engine_profile._show("fill-mask engine", found)
    assert lines[0] == "### fill-mask engine" and lines[1].startswith("device stage (infer) ms a call: first calls")
    assert lines[2].startswith("device stage through a device process")
