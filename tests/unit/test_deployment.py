"""docker-compose.yml, the Dockerfile and the Grafana dashboard describe the stack the README promises. Docker
is not available here, so the files are loaded and their properties checked; every `distilq` command they name
must parse in the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core import metrics
from core.settings import Settings
from distilq.cli import build_parser, up_environment

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def test_the_stack_has_every_part() -> None:
    assert set(SERVICES) == {"postgres", "redis", "migrate", "api", "worker", "worker-cpu", "webhooks", "beat",
                             "flower"}
    assert SERVICES["worker-cpu"]["profiles"] == ["cpu"] and SERVICES["flower"]["profiles"] == ["monitoring"]


def test_redis_keeps_its_data_and_never_evicts() -> None:
    redis = SERVICES["redis"]
    command = " ".join(redis["command"])
    for setting in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert setting in command
    assert redis["volumes"] and redis["healthcheck"]["test"]


def test_data_stores_are_healthchecked_have_volumes_and_are_not_published() -> None:
    for name in ("postgres", "redis"):
        service = SERVICES[name]
        assert service["healthcheck"]["test"] and service["volumes"]
        assert "ports" not in service, f"{name} must not be published on the host"


def test_services_wait_for_healthy_data_stores_and_the_migration() -> None:
    for name in ("api", "worker", "worker-cpu", "webhooks", "beat"):
        depends = SERVICES[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["migrate"]["command"] == ["distilq", "migrate"]


def test_the_gpu_worker_reserves_a_gpu_and_the_cpu_one_does_not() -> None:
    [device] = SERVICES["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    assert "deploy" not in SERVICES["worker-cpu"]
    assert SERVICES["worker-cpu"]["environment"]["DISTILQ_DEVICE"] == "cpu"


def test_secrets_come_from_an_env_file_whose_example_is_committed() -> None:
    example = (ROOT / ".env.example").read_text()
    keys = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line and not line.startswith("#")}
    assert {"POSTGRES_PASSWORD", "DISTILQ_DATABASE_URL", "DISTILQ_REDIS_URL"} <= keys
    for name, service in SERVICES.items():
        if name not in ("redis", "flower"):
            assert service["env_file"] == ".env", name
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("name", [n for n, s in SERVICES.items() if str(s.get("command", [""])[0]) == "distilq"])
def test_every_command_exists_in_the_cli(name: str) -> None:
    build_parser().parse_args(SERVICES[name]["command"][1:])  # exits (SystemExit) on an unknown command or flag


def test_the_images_are_built_from_dockerfile_targets() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.MULTILINE))
    for name, service in SERVICES.items():
        if "build" in service:
            assert service["build"]["target"] in targets, name
    assert "USER distilq" in dockerfile and "ARG BAKE_MODELS" in dockerfile
    assert "tests" in (ROOT / ".dockerignore").read_text().splitlines()
    for command in re.findall(r'^CMD \["distilq", (.*)\]$', dockerfile, re.MULTILINE):
        build_parser().parse_args(json.loads(f"[{command}]"))


def test_the_dashboard_queries_only_metrics_distilq_exports() -> None:
    defined = [getattr(metrics, name) for name in dir(metrics) if name.isupper()]
    exported = {"distilq_queue_depth", "distilq_jobs_in_flight"} | {m._name for m in defined if hasattr(m, "_name")}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "distilq.json").read_text())
    used = {re.sub(r"_(total|bucket|count|sum)$", "", m) for panel in dashboard["panels"] for target in panel["targets"]
            for m in re.findall(r"distilq_[a-z_]+", target["expr"])}
    assert used and used <= {re.sub(r"_total$", "", m) for m in exported}


def test_distilq_up_starts_no_check_process_and_allows_local_webhooks_unless_told_otherwise(tmp_path: Path) -> None:
    """On a laptop the worker's forward passes run on the API's cores: a check process would only take them."""
    settings = Settings(home=tmp_path)
    env = up_environment(settings, {})
    assert env["DISTILQ_CHECK_PROCESSES"] == "0" and env["DISTILQ_WEBHOOK_ALLOW_PRIVATE"] == "true"
    assert env["DISTILQ_DATABASE_URL"] == settings.resolved_database_url
    told = up_environment(settings, {"DISTILQ_CHECK_PROCESSES": "4", "DISTILQ_WEBHOOK_ALLOW_PRIVATE": "false"})
    assert "DISTILQ_CHECK_PROCESSES" not in told and "DISTILQ_WEBHOOK_ALLOW_PRIVATE" not in told


def test_postgres_takes_the_connections_every_process_may_open() -> None:
    """Each process pools up to POOL_SIZE + POOL_OVERFLOW connections: the API's processes (and as many again,
    for an operator who doubles `--workers`), the two workers, the webhook sender, beat and the migration together
    stay within PostgreSQL's max_connections — its default of 100 is below 4 API processes and the rest (8 API
    processes at the default were refused connections on the H200: BENCHMARKS.md, session 30)."""
    from models.db import POOL_OVERFLOW, POOL_SIZE

    match = re.search(r"max_connections=(\d+)", " ".join(SERVICES["postgres"]["command"]))
    assert match is not None
    api = SERVICES["api"]["command"]
    processes = 2 * int(api[api.index("--workers") + 1]) + len(["worker", "worker-cpu", "webhooks", "beat", "migrate"])
    assert processes * (POOL_SIZE + POOL_OVERFLOW) <= int(match.group(1))
