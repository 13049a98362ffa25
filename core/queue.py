"""Celery wiring both sides agree on: the broker, the queues, the task names, and the Redis channel on which a
job's completion is announced. The API only publishes (by task name); it never imports the worker. What an
inference queue carries, wake-ups rather than jobs, is `core/wakeups.py`'s."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from celery import Celery
from kombu import Queue

from core.json_text import json_text
from core.tasks import TASKS

#: Webhook delivery; its only argument is the event id (a row of webhook_events).
DELIVER_TASK = "distilq.deliver_webhook"
#: Each task has its own queue, so a host can serve one model.
INFERENCE_QUEUES = TASKS
WEBHOOK_QUEUE = "webhooks"
#: Redis's default visibility timeout is an hour; a wake-up is never held near that, and `beat` recovers jobs
#: through leases and forced wake-ups, so the broker-level redelivery can stay long.
VISIBILITY_TIMEOUT_S = 3600


def make_celery(redis_url: str) -> Celery:
    app = Celery("distilq", broker=redis_url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        broker_connection_retry_on_startup=True,
        # Keep reconnecting for as long as Redis is away; the jobs wait in the database meanwhile.
        broker_connection_max_retries=None,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        task_queues=[Queue(name) for name in (*INFERENCE_QUEUES, WEBHOOK_QUEUE)],
        task_default_queue=INFERENCE_QUEUES[0],
        # A publish that cannot reach Redis must fail fast: the job is committed and `beat` publishes it later.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def publish_webhook(app: Celery, event_id: str) -> None:
    app.send_task(DELIVER_TASK, args=[event_id], queue=WEBHOOK_QUEUE)


#: Redis pub/sub channel on which `distilq keys revoke` announces a revocation to every API process.
KEYS_REVOKED_CHANNEL = "distilq:keys-revoked"


#: A finished job's JSON is announced in full up to this size; a larger one by its status only.
ANNOUNCED_JOB_MAX_BYTES = 64 * 1024
#: One message of a waiter channel carries the announcements of many jobs up to about this size (each job's whole).
ANNOUNCEMENT_MESSAGE_BYTES = 1024 * 1024


def waiter_channel(held_by: str) -> str:
    """Redis pub/sub channel of one API process (`held_by`: its announcement token, recorded on the jobs whose
    requests it holds): those jobs' reaching a terminal status is announced there (`announcements`), to it alone —
    a pass's jobs of one process in one message."""
    return f"distilq:jobs-finished:{held_by}"


def earlier_waiter_channel(held_by: str) -> str:
    """Where workers of versions before `waiter_channel` announced one job a message, in the same form: an API
    process hears it too, so that none of an older worker's announcements is missed while a deployment is upgraded.
    (A process of such a version hears only this one: during an upgrade it waits for its re-read instead.)"""
    return f"distilq:job-finished:{held_by}"


def announcement(job_id: str, status: str, public: dict[str, Any] | None = None) -> str:
    """One job's announcement: its id, a newline, then its JSON as GET /v1/jobs/{id} shows it (an object: it starts
    with `{`) when given and at most ANNOUNCED_JOB_MAX_BYTES, else its status. Neither holds a newline (compact JSON
    escapes every one in its strings), so announcements are joined by newlines (`announcements`)."""
    if public is not None:
        body = json_text(public)
        if len(body) <= ANNOUNCED_JOB_MAX_BYTES:
            return f"{job_id}\n{body}"
    return f"{job_id}\n{status}"


def announcements(announced: Iterable[str]) -> Iterator[str]:
    """The messages that carry these `announcement`s: as many in each as fit in ANNOUNCEMENT_MESSAGE_BYTES, so that
    a listener reads and parses one message a pass, not one a job."""
    message: list[str] = []
    size = 0
    for one in announced:
        if message and size + len(one) > ANNOUNCEMENT_MESSAGE_BYTES:
            yield "\n".join(message)
            message, size = [], 0
        message.append(one)
        size += len(one) + 1
    if message:
        yield "\n".join(message)


def read_announcements(data: bytes) -> list[tuple[str, str | None]]:
    """Each announced job of a message: (its id, its JSON text — None when announced by its status only). A line
    without its pair (not a message of ours) is left out rather than raised on: the listener must live on."""
    lines = data.decode(errors="replace").split("\n")
    pairs = zip(lines[::2], lines[1::2], strict=False)
    return [(job_id, body if body.startswith("{") else None) for job_id, body in pairs]
