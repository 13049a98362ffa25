"""The Celery app of the worker and its one inference task. Engines load in the process that runs tasks (the
solo pool: the worker's own process), never before a fork."""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutdown
from prometheus_client import start_http_server
from sqlalchemy.orm import Session, sessionmaker

from distilq.clock import utcnow
from distilq.metrics import WORKER_READY
from distilq.queue import DELIVER_TASK, INFER_TASK, INFERENCE_QUEUES, make_celery
from distilq.settings import get_settings
from models.db import make_engine, make_session_factory
from worker.batcher import Batcher
from worker.engine.registry import EngineRegistry
from worker.events import JobEvents
from worker.presence import announce
from worker.webhook_sender import WebhookSender

log = logging.getLogger(__name__)

settings = get_settings()
app = make_celery(settings.redis_url)
# Prefetch sized to the batch: the messages of a batch's jobs are at hand, unacknowledged until handled.
app.conf.worker_prefetch_multiplier = settings.max_batch_size

#: The inference tasks this worker serves; set by `distilq worker` from its queues.
served_tasks: list[str] = list(INFERENCE_QUEUES)
#: Where this worker serves its metrics (None: 9101 for inference, 9102 for webhooks; 0: nowhere).
metrics_port: int | None = None
#: Default metrics ports of the two kinds of worker.
INFERENCE_METRICS_PORT, WEBHOOK_METRICS_PORT = 9101, 9102


@functools.cache
def engines() -> EngineRegistry:
    return EngineRegistry(settings)


@functools.cache
def sessions() -> sessionmaker[Session]:
    return make_session_factory(make_engine(settings.resolved_database_url, eager_writer=True))


@functools.cache
def batcher() -> Batcher:
    events = JobEvents(redis.Redis.from_url(settings.redis_url, socket_timeout=5), app)
    return Batcher(sessions(), engines().get, events, settings, utcnow)


@functools.cache
def webhook_sender() -> WebhookSender:
    return WebhookSender(sessions(), settings, utcnow)


@app.task(name=INFER_TASK)
def infer(job_id: str) -> None:
    batcher().handle(job_id)


@app.task(name=DELIVER_TASK)
def deliver_webhook(event_id: str) -> None:
    webhook_sender().deliver(event_id)


@worker_ready.connect
def _load_models(**_kwargs: Any) -> None:
    """Load and warm the models before the first job, so its latency is the model's, not the loading's."""
    for task in served_tasks:
        engines().get(task)
    WORKER_READY.set(1)
    port = metrics_port if metrics_port is not None else (
        INFERENCE_METRICS_PORT if served_tasks else WEBHOOK_METRICS_PORT)
    if port:
        try:
            start_http_server(port)
        except OSError as error:  # another worker on this host has it: run without metrics
            log.warning("metrics port %d unavailable: %s", port, error)
    announce(redis.Redis.from_url(settings.redis_url, socket_timeout=5), served_tasks, _presence_stop)
    log.info("worker ready: %s", ", ".join(served_tasks) or "webhooks")


_presence_stop = threading.Event()


@worker_shutdown.connect
def _withdraw(**_kwargs: Any) -> None:
    _presence_stop.set()
