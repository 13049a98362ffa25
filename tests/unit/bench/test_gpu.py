"""`python -m bench.gpu`: the GPU run's steps as `bench.run` commands, at the GPU's sizes or small for a smoke run, and
within the time the device lends."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from bench import gpu


def _value(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_a_gpu_step_runs_on_cuda_at_the_gpus_sizes() -> None:
    step = next(step for step in gpu.STEPS if step.name == "jobs")
    command = gpu.step_command(step, Path("/out"), Path("/models"), smoke=False)
    assert command[1:3] == ["-m", "bench.run"]
    assert _value(command, "--device") == "cuda" and _value(command, "--dtype") == "float16"
    assert _value(command, "--batch") == "512" and _value(command, "--max-batch-tokens") == "131072"
    assert _value(command, "--fill-mask-jobs") == "8192" and _value(command, "--concurrency") == "512"
    assert _value(command, "--output") == "/out/jobs.json" and "--database-url" not in command
    # 2,000 jobs/s is more than one Python process of clients holds.
    assert _value(command, "--client-processes") == "4"


def test_a_smoke_step_is_small_on_this_machines_device_and_keeps_whole_64_input_jobs() -> None:
    jobs, jobs_64 = (next(step for step in gpu.STEPS if step.name == name) for name in ("jobs", "jobs-64"))
    small = gpu.step_command(jobs, Path("/out"), Path("/models"), smoke=True)
    assert "--device" not in small and _value(small, "--dtype") == "auto"
    assert _value(small, "--fill-mask-jobs") == "64" and _value(small, "--concurrency") == "4"
    assert _value(small, "--batch") == "32"
    assert int(_value(small, "--client-processes")) <= int(_value(small, "--concurrency"))
    wide = gpu.step_command(jobs_64, Path("/out"), Path("/models"), smoke=True)
    assert _value(wide, "--inputs-per-job") == "64" and int(_value(wide, "--fill-mask-jobs")) == 4 * 64


def test_the_targets_steps_run_first_within_the_default_budget_and_the_profile_on_cuda_with_the_padded_layout() -> None:
    deciding = ["float16", "postgres", "batch", "jobs-64", "batch-postgres"]
    assert [step.name for step in gpu.STEPS[:len(deciding)]] == deciding
    # The default budget reaches them, and the steps that explain them, on their expected times.
    reached, spent = [], 0
    for step in gpu.STEPS:
        if spent + step.expected_s > gpu.BUDGET_S:
            break
        reached.append(step.name)
        spent += step.expected_s
    assert set(deciding) | {"worker-lines", "batch-2-workers"} <= set(reached)
    batch, rows_1 = (next(step for step in gpu.STEPS if step.name == name) for name in ("batch", "batch-rows-1"))
    assert rows_1.env == {"DISTILQ_BATCH_ROW_INPUTS": "1"} and not batch.env  # the default's rows beside a line's
    profile, padded = (next(step for step in gpu.STEPS if step.name == name) for name in ("profile", "profile-padded"))
    command = gpu.step_command(profile, Path("/out"), Path("/models"), smoke=False)
    assert command[1:3] == ["-m", "bench.engine_profile"] and _value(command, "--device") == "cuda"
    assert _value(command, "--batch") == "512" and _value(command, "--output") == "/out/profile.json"
    assert "--attention" not in command  # the worker's default layout
    # The variant's figures are the in-process calls: no device process of its own to start.
    assert "--no-device-process" in padded.args and "--no-device-process" not in profile.args
    assert _value(gpu.step_command(padded, Path("/out"), Path("/models"), smoke=False), "--attention") == "padded"
    eager = next(step for step in gpu.STEPS if step.name == "profile-eager")
    assert eager.env == {"CUDA_MODULE_LOADING": "EAGER"} and not profile.env
    small = gpu.step_command(profile, Path("/out"), Path("/models"), smoke=True)
    assert "--device" not in small and _value(small, "--calls") == "4"


def test_the_file_check_step_runs_its_own_bench_with_its_own_arguments() -> None:
    step = next(step for step in gpu.STEPS if step.name == "file-check")
    command = gpu.step_command(step, Path("/out"), Path("/models"), smoke=False)
    assert command[1:3] == ["-m", "bench.file_check"] and "--device" not in command and "--batch" not in command
    assert _value(command, "--lines") == "10000" and _value(command, "--check-processes") == "0,4,8"
    assert _value(gpu.step_command(step, Path("/out"), Path("/models"), smoke=True), "--lines") == "78"


def test_the_worker_lines_step_runs_on_the_host_alone() -> None:
    step = next(step for step in gpu.STEPS if step.name == "worker-lines")
    command = gpu.step_command(step, Path("/out"), Path("/models"), smoke=False)
    assert command[1:] == ["-m", "bench.worker_lines", "--lines", "10240", "--rounds", "4", "--row-inputs", "1,16"]
    assert _value(gpu.step_command(step, Path("/out"), Path("/models"), smoke=True), "--lines") == "80"


def test_the_postgres_step_is_given_its_database() -> None:
    step = next(step for step in gpu.STEPS if step.name == "postgres")
    command = gpu.step_command(step, Path("/out"), Path("/models"), smoke=False, database_url="postgresql+psycopg://x")
    # 4 API processes ran 986 jobs/s on the H200 host, bound by their CPU: 8 of its 16 cores.
    assert _value(command, "--database-url") == "postgresql+psycopg://x" and _value(command, "--api-workers") == "8"
    assert _value(command, "--client-processes") == "4"


def test_the_postgres_step_runs_again_on_threads_after_it() -> None:
    names = [step.name for step in gpu.STEPS]
    default, threads = (gpu.STEPS[names.index(name)] for name in ("postgres", "postgres-threads"))
    assert threads.args == default.args and threads.postgres and not default.env  # gevent: PostgreSQL's default
    assert threads.env == {"DISTILQ_API_SERVER": "threads"}
    assert names.index("postgres-threads") > names.index("postgres")


def test_the_batch_runs_again_without_a_device_process_to_weigh_it() -> None:
    step = next(step for step in gpu.STEPS if step.name == "batch-in-worker")
    batch = next(step for step in gpu.STEPS if step.name == "batch")
    assert step.env == {"DISTILQ_DEVICE_PROCESS": "false"} and not batch.env
    command = gpu.step_command(step, Path("/out"), Path("/models"), smoke=False)
    assert _value(command, "--modes") == "e" and _value(command, "--fill-mask-jobs") == "10000"
    assert gpu.shown(step, command).startswith("DISTILQ_DEVICE_PROCESS=false python -m bench.run ")


def test_the_batch_runs_again_on_two_workers_sharing_the_device() -> None:
    step = next(step for step in gpu.STEPS if step.name == "batch-2-workers")
    command = gpu.step_command(step, Path("/out"), Path("/models"), smoke=False)
    assert _value(command, "--workers") == "2" and _value(command, "--modes") == "e" and not step.env
    assert _value(command, "--device") == "cuda"


def test_steps_that_do_not_fit_the_budget_are_skipped_and_said_so(tmp_path: Path) -> None:
    assert gpu.main(["--out", str(tmp_path), "--budget-s", "5", "--steps", "float16,batch"]) == 0
    summary = (tmp_path / "summary.md").read_text()
    assert "## float16: skipped" in summary and "## batch: skipped" in summary
    assert not list(tmp_path.glob("*.log"))  # nothing ran


def test_what_a_run_brings_back_is_the_summary_and_one_archive_of_every_step(tmp_path: Path) -> None:
    out, back = tmp_path / "out", tmp_path / "back"
    assert gpu.main(["--out", str(out), "--budget-s", "5", "--steps", "float16", "--bring-back", str(back)]) == 0
    (out / "float16.log").write_text("a step's log")  # as a step that ran leaves it
    gpu.bring_back(out, back)
    assert sorted(path.name for path in back.iterdir()) == ["steps.tar.gz", "summary.md"]
    assert (back / "summary.md").read_text() == (out / "summary.md").read_text()
    with tarfile.open(back / "steps.tar.gz") as archive:
        assert sorted(archive.getnames()) == ["float16.log", "summary.md"]
        log = archive.extractfile("float16.log")
        assert log is not None and log.read() == b"a step's log"


@pytest.mark.parametrize(("line", "kept"), [
    ("| (c) | distilq engine | 1089.0 |", True),
    ("batch of 10000 lines checked and queued: 1.48 s wall, 1.82 CPU s (182 CPU-µs a line), 0.00 CPU s in 0 check "
     "processes, least of 2", True),
    ("ratios (sequences/s): d/c = 0.84", True),
    ("(h) fill-mask at float16 against the float32 pipeline: top-5 lists 386/400 equal", True),
    ("machine: x86_64, 16 cores, torch 2.13.0, cuda, float16", True),
    ("device stage (infer) ms a call: first calls [1368.0, 71.0, 70.2]; new inputs median 69.0", True),
    ("profiled, a call: wall 48.1 ms, kernels 6.2 ms on the device, 231.0 launches", True),
    ("stack started in 41.2 s: Redis, migrations and a key 2.0, the API 3.1, the worker(s) ready 36.1", True),
    ("Loading weights: 100%|██████████| 105/105", False),
])
def test_the_summary_keeps_the_figures_of_a_log_and_drops_its_progress(line: str, kept: bool) -> None:
    assert (gpu.summary_lines(line) == [line]) is kept
