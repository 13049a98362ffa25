"""The worker's Celery app, built by `create_worker_app` from the settings and what this worker serves: the
wake-up of a task's queue (the batcher drains its queued jobs) and webhook delivery. Engines load in the process
that runs tasks (the solo pool: the worker's own process), never before a fork."""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from prometheus_client import start_http_server
from sqlalchemy.orm import Session, sessionmaker

from core.clock import utcnow
from core.heap import freeze_heap
from core.metrics import WORKER_READY
from core.presence import announce, worker_name
from core.queue import DELIVER_TASK, make_celery
from core.settings import Settings
from core.tasks import ModelUnavailable
from core.wakeups import WAKE_TASK
from models.db import make_engine, make_session_factory
from webhooks import WebhookSender
from worker.batcher import Batcher
from worker.engine.registry import EngineRegistry
from worker.events import JobEvents

log = logging.getLogger(__name__)

#: Messages a webhook sender takes ahead per sending thread.
WEBHOOK_PREFETCH = 4
#: Default metrics ports of the two kinds of worker.
INFERENCE_METRICS_PORT, WEBHOOK_METRICS_PORT = 9101, 9102


@dataclass
class WorkerContext:
    """What one worker process holds for its life, each part made on first use (after any fork)."""

    settings: Settings
    celery: Celery
    #: The inference tasks this worker serves; empty for a webhook sender.
    served_tasks: list[str]
    #: Where this worker serves its metrics (None: the default of its kind; 0: nowhere).
    metrics_port: int | None
    presence_stop: threading.Event = field(default_factory=threading.Event)

    @functools.cached_property
    def engines(self) -> EngineRegistry:
        return EngineRegistry(self.settings, self.served_tasks)

    @functools.cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(make_engine(self.settings.resolved_database_url, eager_writer=True))

    @functools.cached_property
    def batcher(self) -> Batcher:
        events = JobEvents(redis.Redis.from_url(self.settings.redis_url, socket_timeout=5), self.celery)
        return Batcher(self.sessions, self.engines.get, events, self.settings, utcnow, worker_name())

    @functools.cached_property
    def webhook_sender(self) -> WebhookSender:
        return WebhookSender(self.sessions, self.settings, utcnow)

    def load_models(self) -> None:
        """Load and warm the model of every served task, before this worker consumes a message: a worker that
        cannot serve a task must not take its jobs (they would start and then wait out their lease). Raises
        ModelUnavailable saying which model and why."""
        for task in self.served_tasks:
            try:
                self.engines.get(task)
            except Exception as error:
                raise ModelUnavailable(
                    f"cannot serve {task}: model {self.settings.model_id(task)!r} did not load "
                    f"({error.__class__.__name__}: {error}){self.settings.offline_hint(task)}") from error
        if self.served_tasks:
            # Batches as large as a forward pass on this device, unless configured.
            rows, tokens = self.engines.pass_limits()
            self.settings = self.settings.model_copy(update={"max_batch_size": rows, "max_batch_tokens": tokens})

    def _passes(self) -> dict[str, Any]:
        """What this worker's presence says of its passes, for the API's sizing of a batch's rows of lines
        (`store.batch_rows.row_inputs`): its device, and the seconds one more input adds to a pass of each task
        (None until passes of different sizes have been timed)."""
        batcher: Batcher | None = self.__dict__.get("batcher")  # read, not made: the presence thread makes nothing
        return {"device": self.engines.runtime.device.type,
                "seconds_per_input": {task: batcher.seconds_per_input(task) if batcher else None
                                      for task in self.served_tasks}}

    def ready(self) -> None:
        """Once consuming: open the metrics port and announce this worker (its models are loaded and warm)."""
        freeze_heap()
        WORKER_READY.set(1)
        port = self.metrics_port if self.metrics_port is not None else (
            INFERENCE_METRICS_PORT if self.served_tasks else WEBHOOK_METRICS_PORT)
        if port:
            try:
                start_http_server(port)
            except OSError as error:  # another worker on this host has it: run without metrics
                log.warning("metrics port %d unavailable: %s", port, error)
        announce(redis.Redis.from_url(self.settings.redis_url, socket_timeout=5), self.served_tasks,
                 self.presence_stop, self._passes if self.served_tasks else None)
        log.info("worker ready: %s", ", ".join(self.served_tasks) or "webhooks")


def create_worker_app(settings: Settings, served_tasks: list[str],
                      metrics_port: int | None = None) -> tuple[Celery, WorkerContext]:
    """The Celery app of a worker serving `served_tasks` (none: a webhook sender), and what it holds."""
    app = make_celery(settings.redis_url)
    # A wake-up keeps an inference worker busy while it drains; one it holds in reserve would be one an idle
    # worker cannot take.
    app.conf.worker_prefetch_multiplier = 1 if served_tasks else WEBHOOK_PREFETCH
    context = WorkerContext(settings, app, served_tasks, metrics_port)

    @app.task(name=WAKE_TASK)
    def wake(task: str) -> None:
        if task in served_tasks:
            context.batcher.drain(task)

    @app.task(name=DELIVER_TASK)
    def deliver_webhook(event_id: str) -> None:
        context.webhook_sender.deliver(event_id)

    def on_ready(**_kwargs: Any) -> None:
        context.ready()

    def on_shutting_down(**_kwargs: Any) -> None:
        if "batcher" in context.__dict__:  # made on first use (cached_property)
            context.batcher.stopping.set()

    def on_shutdown(**_kwargs: Any) -> None:
        context.presence_stop.set()

    # Celery's signals are process-wide; strong references, since the handlers are closures.
    worker_ready.connect(on_ready, weak=False)
    worker_shutting_down.connect(on_shutting_down, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
    return app, context
