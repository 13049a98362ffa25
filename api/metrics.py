"""`GET /metrics` in Prometheus text format: the API processes' counters merged across gunicorn workers, plus
what is true at scrape time — queue depth per queue (Redis) and jobs in flight (the database)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.state import AppState, app_state
from core.queue import INFERENCE_QUEUES, WEBHOOK_QUEUE
from models.tables import QUEUED, RUNNING
from store.job_reads import in_flight_counts

bp = Blueprint("metrics", __name__)


class LiveState(Collector):
    def __init__(self, state: AppState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("distilq_queue_depth", "Messages waiting in each Redis queue (inference queues "
                                  "hold wake-ups; the jobs waiting are distilq_jobs_in_flight)", labels=["queue"])
        try:
            for queue in (*INFERENCE_QUEUES, WEBHOOK_QUEUE):
                depth.add_metric([queue], float(self.state.redis.llen(queue)))
        except Exception:  # Redis down: /readyz says so; the metric is left out
            pass
        yield depth
        in_flight = GaugeMetricFamily("distilq_jobs_in_flight", "Jobs queued or running", labels=["task", "status"])
        try:
            with self.state.read_sessions() as session:
                counts = in_flight_counts(session)
            for task in INFERENCE_QUEUES:
                for status in (QUEUED, RUNNING):
                    in_flight.add_metric([task, status], float(counts.get((task, status), 0)))
        except Exception:
            pass
        yield in_flight


@bp.get("/metrics")
def metrics() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Forward())
    registry.register(LiveState(app_state()))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


class _Forward(Collector):
    """The process's own default registry, when not running under several gunicorn processes."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
