"""Which tasks the ready workers serve, from their presence keys in a real (embedded) Redis: none, one, or the
`count` a stack waits for (`distilq.stack.LocalStack.wait_for_workers`)."""

from __future__ import annotations

import json

import redis

from core.presence import unserved_tasks, worker_key
from core.tasks import TASK_FILL_MASK, TASK_QUESTION_ANSWERING
from distilq.stack import EmbeddedRedis

TASKS = [TASK_FILL_MASK, TASK_QUESTION_ANSWERING]


def test_a_task_is_unserved_until_count_ready_workers_serve_it(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url, db=15)  # a database of its own: no other test's workers
    client.flushdb()
    assert unserved_tasks(client, TASKS) == TASKS
    for name, tasks in (("a", [TASK_FILL_MASK]), ("b", TASKS)):
        client.set(worker_key(name), json.dumps({"name": name, "tasks": tasks}), ex=60)
    assert unserved_tasks(client, TASKS) == []
    assert unserved_tasks(client, TASKS, count=2) == [TASK_QUESTION_ANSWERING]
    assert unserved_tasks(client, TASKS, count=3) == TASKS
    client.flushdb()
