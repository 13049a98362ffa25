"""What one API process holds for its lifetime: database engine, Redis client, Celery publisher, tokenizers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import redis
from celery import Celery
from flask import Flask, current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.announcements import Announcements
from api.check_pool import CheckPool
from api.key_cache import KeyCache
from api.limits import KeyRateLimiter
from api.model_inputs import MODEL_RETRY_AFTER_S, ServedModel, load_served_model, model_unavailable
from api.waiting import WaitSlots
from core.queue import make_celery
from core.settings import Settings
from core.tasks import ModelUnavailable
from models.db import make_engine, make_read_session_factory, make_session_factory


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    #: For reads only (a job's status while a request waits on it): on SQLite they take no write lock.
    read_sessions: sessionmaker[Session]
    redis: redis.Redis
    celery: Celery
    rate_limiter: KeyRateLimiter
    announcements: Announcements
    key_cache: KeyCache
    wait_slots: WaitSlots
    #: Where a batch file's lines are judged.
    check_pool: CheckPool
    _models: dict[str, ServedModel] = field(default_factory=dict)
    #: task → (monotonic time until which the failure stands, its message)
    _failures: dict[str, tuple[float, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def served_model(self, task: str) -> ServedModel:
        """The tokenizer of the model serving `task`, loaded on first use. A failure is remembered for
        MODEL_RETRY_AFTER_S: requests meanwhile fail at once with the same cause, rather than each trying again
        behind the lock. Raises ModelUnavailable."""
        with self._lock:
            if task in self._models:
                return self._models[task]
            failed = self._failures.get(task)
            if failed is not None and time.monotonic() < failed[0]:
                raise ModelUnavailable(failed[1])
            try:
                self._models[task] = load_served_model(self.settings.model_id(task))
            except Exception as error:
                message = f"{error}{self.settings.offline_hint(task)}"
                self._failures[task] = (time.monotonic() + MODEL_RETRY_AFTER_S, message)
                raise ModelUnavailable(message) from error
            self._failures.pop(task, None)
            return self._models[task]


def init_app(app: Flask, settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    key_cache = KeyCache(trusted=lambda: announcements.subscribed.is_set())
    announcements = Announcements(settings.redis_url, on_keys_revoked=key_cache.clear)
    app.extensions["distilq"] = AppState(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        read_sessions=make_read_session_factory(engine),
        redis=client,
        celery=make_celery(settings.redis_url),
        rate_limiter=KeyRateLimiter(settings.redis_url, settings.rate_limit),
        announcements=announcements,
        key_cache=key_cache,
        wait_slots=WaitSlots(settings.max_waiting_per_key),
        check_pool=CheckPool(settings),
    )


def app_state() -> AppState:
    state: AppState = current_app.extensions["distilq"]
    return state



def served(task: str) -> ServedModel:
    """The served model's tokenizer side, or a 503 (`model_unavailable`) while it cannot be loaded."""
    try:
        return app_state().served_model(task)
    except ModelUnavailable as error:
        raise model_unavailable(task, error) from None
