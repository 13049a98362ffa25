"""What one API process holds for its lifetime: database engine, Redis client, Celery publisher, tokenizers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import redis
from celery import Celery
from flask import Flask, current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.limits import KeyRateLimiter
from api.model_inputs import ServedModel, load_served_model
from api.waiting import CompletionListener, WaitSlots
from core.queue import make_celery
from core.settings import Settings
from core.tasks import TASK_FILL_MASK
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
    completions: CompletionListener
    wait_slots: WaitSlots
    _models: dict[str, ServedModel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def model_id(self, task: str) -> str:
        return self.settings.fill_mask_model if task == TASK_FILL_MASK else self.settings.qa_model

    def served_model(self, task: str) -> ServedModel:
        """The tokenizer of the model serving `task`, loaded on first use."""
        with self._lock:
            if task not in self._models:
                self._models[task] = load_served_model(self.model_id(task))
            return self._models[task]


def init_app(app: Flask, settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    app.extensions["distilq"] = AppState(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        read_sessions=make_read_session_factory(engine),
        redis=redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2),
        celery=make_celery(settings.redis_url),
        rate_limiter=KeyRateLimiter(settings.redis_url, settings.rate_limit),
        completions=CompletionListener(settings.redis_url),
        wait_slots=WaitSlots(settings.max_waiting_per_key),
    )


def app_state() -> AppState:
    state: AppState = current_app.extensions["distilq"]
    return state

