"""Test doubles of distilq's seams that behave like the real parts at their boundary (the stub engine ships with
the worker: `worker/engine/stub.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any


class ManualClock:
    """The clock, moved by hand: `clock()` is now; `advance(seconds)` moves it on."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class RecordingEvents:
    """`worker.events.JobEvents` that records what it would publish instead of publishing it."""

    def __init__(self) -> None:
        self.queued_jobs: list[tuple[str, str]] = []
        self.finished_jobs: list[tuple[str, str]] = []
        self.webhook_events: list[str] = []
        #: The JSON announced with each finished job, by id.
        self.finished_public: dict[str, dict[str, Any]] = {}
        #: The API process holding each finished job's request, for the jobs that had one.
        self.held_by: dict[str, str] = {}
        #: ("taken" | "backlog", task) in the order the batcher reported them.
        self.wakeups: list[tuple[str, str]] = []
        #: How many times beat was asked for a sweep because a file's last line was written.
        self.files_moved_asks = 0

    def queued(self, jobs: list[tuple[str, str]]) -> None:
        self.queued_jobs += jobs

    def wake_taken(self, task: str) -> None:
        self.wakeups.append(("taken", task))

    def backlog(self, task: str) -> None:
        self.wakeups.append(("backlog", task))

    def finished(self, jobs: list[tuple[str, str, str | None]],
                 public: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.finished_jobs += [(job_id, status) for job_id, status, _ in jobs]
        self.held_by.update((job_id, held_by) for job_id, _, held_by in jobs if held_by)
        self.finished_public.update(public or {})

    def files_moved(self) -> None:
        self.files_moved_asks += 1

    def webhooks(self, event_ids: list[str]) -> None:
        self.webhook_events += event_ids
