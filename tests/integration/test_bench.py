"""The benchmark (`python -m bench.run`) end to end on a few jobs: the base-shaped checkpoint, every mode of both
tasks (QA's (a) and (b) through the fallback path, there being no transformers 4.57.6 venv here), and the report
it writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from bench.workload import make_workload

pytestmark = pytest.mark.integration


def _bench(tmp_path: Path, timeout: int, args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`python -m bench.run` with `args` (split on spaces), its models and report under `tmp_path`, no DISTILQ_
    setting of this process leaking in; asserts it exits 0. Its output, and where its report is."""
    output = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILQ_")}
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", *args.split(), "--models", str(tmp_path / "models"),
         "--output", str(output)],
        env={**env, "DISTILQ_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"},
        capture_output=True, text=True, timeout=timeout,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run, output


def test_bench_runs_every_mode_and_reports_them(tmp_path: Path) -> None:
    run, output = _bench(tmp_path, 900, "--fill-mask-jobs 6 --qa-jobs 3 --batch 4 --concurrency 3")
    assert "measured float32 matrix-multiply rate" in run.stdout
    report = json.loads(output.read_text())
    assert report["peak"]["flops_per_s"] > 0
    for task, jobs in (("fill-mask", 6), ("question-answering", 3)):
        modes = {row["mode"]: row for row in report[task]}
        assert set(modes) == {"a", "b", "c", "d"}
        for row in modes.values():
            assert row["sequences"] == jobs and row["sequences_per_s"] > 0
        assert modes["c"]["flops"] > 0 and modes["c"]["padding_ratio"] == 1.0
        assert modes["c"]["outside_model_us_per_input"] > modes["c"]["host_us_per_input"] > 0
        assert modes["d"]["flops"] is None
    # 6 jobs with at most 3 in flight make at least two batches after the warm-up one: a breakdown.
    fill_mask = {row["mode"]: row for row in report["fill-mask"]}
    assert any(note.startswith("per batch") for note in fill_mask["d"]["notes"])
    # The per-job pipeline runs again after the end-to-end modes: the ratio against it is not one phase's.
    assert any(note.startswith("run before and after the end-to-end modes") for note in fill_mask["a"]["notes"])
    qa_a = {row["mode"]: row for row in report["question-answering"]}["a"]
    assert any("no transformers 4.57.6 venv" in note for note in qa_a["notes"])
    assert "CPU work outside the forward passes and the head's product" in run.stdout


def test_bench_measures_the_service_on_the_tiny_checkpoint(tmp_path: Path) -> None:
    """`--checkpoint tiny` with several inputs per job: (d) counts inputs, and says the CPU-ms per job."""
    run, output = _bench(tmp_path, 600, "--checkpoint tiny --tasks fill-mask --fill-mask-jobs 12 "
                         "--inputs-per-job 4 --batch 4 --concurrency 2")
    assert "the tiny test checkpoint" in run.stdout
    d = {row["mode"]: row for row in json.loads(output.read_text())["fill-mask"]}["d"]
    assert d["sequences"] == 12 and "4 input(s) per job" in d["label"]
    assert any("jobs/s; CPU ms per job: api" in note for note in d["notes"])


def test_bench_runs_the_stack_with_several_workers_and_client_processes(tmp_path: Path) -> None:
    """`--workers 2`: (d) and (e) on a stack of two inference workers, each one's CPU reported; `--client-processes
    2`: (d)'s clients in two processes, every job still held to its end and their CPU counted."""
    run, output = _bench(tmp_path, 600, "--checkpoint tiny --tasks fill-mask --modes de --fill-mask-jobs 40 --batch 4 "
                         "--concurrency 4 --workers 2 --client-processes 2")
    rows = {row["mode"]: row for row in json.loads(output.read_text())["fill-mask"]}
    assert "2 workers" in rows["d"]["label"] and "clients in 2 processes" in rows["d"]["label"]
    assert rows["d"]["sequences"] == 40 and rows["d"]["p50_ms"] > 0
    clients = re.search(r"clients ([0-9.]+) \(the service", " ".join(rows["d"]["notes"]))
    assert clients is not None and float(clients[1]) > 0
    for mode in ("d", "e"):
        notes = " ".join(rows[mode]["notes"])
        assert "worker " in notes and "worker-2 " in notes, notes


def test_bench_builds_the_tiny_shape_with_the_bench_tokenizer(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    """`--checkpoint tiny-lexicon`: the tiny model's shape under the base checkpoint's tokenizer — the bench's words
    whole or in pieces, not letter by letter as the test checkpoint spells them."""
    run, output = _bench(tmp_path, 600, "--checkpoint tiny-lexicon --modes c --fill-mask-jobs 8 --qa-jobs 2 --batch 4")
    assert "the tiny shape with the bench's tokenizer" in run.stdout
    config = json.loads((tmp_path / "models" / "tiny-lexicon" / "fill-mask" / "config.json").read_text())
    assert (config["dim"], config["n_layers"], config["vocab_size"]) == (32, 2, 28996)
    texts = make_workload(8, 0).fill_mask
    lexicon, letters = (AutoTokenizer.from_pretrained(str(path)) for path in (
        tmp_path / "models" / "tiny-lexicon" / "fill-mask", tiny_models["fill-mask"]))
    assert sum(map(len, lexicon(texts)["input_ids"])) * 2 < sum(map(len, letters(texts)["input_ids"]))


def test_bench_runs_only_the_modes_asked_for(tmp_path: Path) -> None:
    """`--modes c`: the engine alone, both tasks, with its CPU work outside the model and its stages overlapped; no
    pipeline, no stack."""
    run, output = _bench(tmp_path, 600, "--checkpoint tiny --modes c --fill-mask-jobs 8 --qa-jobs 4 --batch 4")
    report = json.loads(output.read_text())
    assert [row["mode"] for row in report["fill-mask"]] == ["c"]
    assert [row["mode"] for row in report["question-answering"]] == ["c"]
    qa = report["question-answering"][0]
    assert qa["outside_model_us_per_input"] > qa["host_us_per_input"] > 0
    assert run.stdout.count("CPU work outside the forward passes and the head's product") == 2
    # ... and the engine again with its stages overlapped as the worker runs them, to the same outputs
    assert run.stdout.count("the stages overlapped as the worker runs them") == 2
    assert run.stdout.count("outputs equal to theirs") == 4  # from the texts and from what the API stores
    assert all(report[task][0]["overlapped_per_s"] > 0 and report[task][0]["overlapped_equal"]
               for task in ("fill-mask", "question-answering"))


def test_bench_runs_a_batch_file_and_an_evaluation_beside_it(tmp_path: Path) -> None:
    """`--modes ef`: the texts as a batch file alone, as an evaluation, and as a batch again beside interactive
    jobs: each mode's rate, the interactive latencies, the passes and the peak memory of each process."""
    run, output = _bench(tmp_path, 600, "--checkpoint tiny --tasks fill-mask --modes ef --fill-mask-jobs 40 --batch 8")
    rows = {row["mode"]: row for row in json.loads(output.read_text())["fill-mask"]}
    assert set(rows) == {"e", "f"} and rows["e"]["sequences"] == rows["f"]["sequences"] == 40
    notes = " ".join(rows["e"]["notes"])
    assert "interactive one-input jobs" in notes and "peak resident memory" in notes and "beat" in notes
    assert "top_k_accuracy" in rows["f"]["notes"][0]
    assert "f/e = " in run.stdout


def test_bench_measures_the_ceiling_and_a_dtypes_agreement(tmp_path: Path) -> None:
    """`--modes gh --dtype bfloat16`: the bare encoder's rate (the ceiling) and how many outputs at bfloat16 equal
    float32's — fill-mask against the pipeline, QA against the engine — counted over the inputs given."""
    run, output = _bench(tmp_path, 600, "--checkpoint tiny --modes cgh --dtype bfloat16 --fill-mask-jobs 12 "
                         "--qa-jobs 5 --batch 4")
    report = json.loads(output.read_text())
    modes = {row["mode"]: row for row in report["fill-mask"]}
    assert set(modes) == {"c", "g"}
    assert modes["g"]["sequences"] == 12 and modes["g"]["flops"] > 0 and "bare encoder" in modes["g"]["label"]
    assert "c/g = " in run.stdout
    fill_mask, qa = report["fill-mask agreement"], report["question-answering agreement"]
    assert fill_mask["dtype"] == qa["dtype"] == "bfloat16"
    assert fill_mask["inputs"] == 12 and 0 <= fill_mask["top5_lists_equal"] <= fill_mask["top1_equal"] <= 12
    assert qa["pairs"] == 5 and 0 <= qa["best_span_equal"] <= 5
    assert "(h) fill-mask at bfloat16 against the float32 pipeline: top-5 lists" in run.stdout


def test_agreement_at_float32_is_complete(tmp_path: Path) -> None:
    """At float32 the engine equals its references: mode (h) must count every output equal, or it counts wrong."""
    _, output = _bench(tmp_path, 600, "--checkpoint tiny --modes h --dtype float32 --fill-mask-jobs 10 "
                         "--qa-jobs 4 --batch 4")
    report = json.loads(output.read_text())
    assert report["fill-mask agreement"]["top5_lists_equal"] == 10
    assert report["question-answering agreement"]["best_span_equal"] == 4


def test_api_requests_bench_measures_each_kind_of_request(tmp_path: Path) -> None:
    """`python -m bench.api_requests`: each kind's requests all answered as asked (it raises otherwise: a held one
    must come back succeeded), and each kind's CPU a request reported for every process of the stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILQ_")}
    run = subprocess.run([sys.executable, "-m", "bench.api_requests", "--requests", "30", "--concurrency", "4",
                          "--models", str(tmp_path / "models")],
                         env={**env, "DISTILQ_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if "CPU ms a request" in line]
    assert [line.split(":")[0] for line in lines] == ["healthz", "poll", "submit", "wait"]
    for line in lines:
        assert re.search(r"[\d.]+ requests/s; CPU ms a request: api [\d.]+, worker [\d.]+, redis [\d.]+$", line), line
