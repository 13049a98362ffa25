"""The API's one announcement listener per process, on a real Redis: it hears its own channel only, wakes exactly
the requests waiting on the announced jobs (many in one message, as the worker announces a pass), hears a worker of
the earlier version too, empties the key cache on a revocation, and comes back after Redis restarts."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from api.announcements import Announcements
from core.queue import (
    KEYS_REVOKED_CHANNEL,
    announcement,
    announcements,
    earlier_waiter_channel,
    read_announcements,
    waiter_channel,
)
from distilq.stack import EmbeddedRedis

pytestmark = pytest.mark.integration


def eventually(check: Callable[[], bool], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def publish_until(client: redis.Redis, channel: str, message: str, woken: Callable[[], bool]) -> None:
    """Publishes `message` until it is seen: the listener may still be subscribing."""
    deadline = time.monotonic() + 15
    while not woken():
        assert time.monotonic() < deadline, "the waiter was never woken"
        client.publish(channel, message)
        time.sleep(0.05)


def announce_until(client: redis.Redis, listener: Announcements, job_id: str, woken: Callable[[], bool],
                   public: dict[str, str] | None = None) -> None:
    """Publishes the job's completion on the listener's channel until it is seen."""
    publish_until(client, waiter_channel(listener.token), announcement(job_id, "succeeded", public), woken)


def test_wakes_the_waiters_of_the_announced_job_only(own_redis: EmbeddedRedis) -> None:
    listener = Announcements(own_redis.url)
    client = redis.Redis.from_url(own_redis.url)
    with listener.watching("job-a") as a1, listener.watching("job-a") as a2, listener.watching("job-b") as b:
        announce_until(client, listener, "job-a", lambda: a1.event.is_set() and a2.event.is_set())
        assert not b.event.is_set()
        assert a1.public is None  # announced by its status only
        announce_until(client, listener, "job-b", b.event.is_set, {"id": "job-b", "status": "succeeded"})
        assert b.public == '{"id":"job-b","status":"succeeded"}'
    # Nobody watches any more: the listener forgot them.
    assert listener._waiters == {}


def test_one_message_wakes_the_waiters_of_each_job_it_announces(own_redis: EmbeddedRedis) -> None:
    """A pass's jobs of one process come in one message (`worker/events.py`)."""
    listener = Announcements(own_redis.url)
    client = redis.Redis.from_url(own_redis.url)
    with listener.watching("job-a") as a, listener.watching("job-b") as b, listener.watching("job-c") as c:
        [message] = announcements([announcement("job-a", "succeeded", {"id": "job-a"}),
                                   announcement("job-b", "failed")])
        publish_until(client, waiter_channel(listener.token), message, lambda: a.event.is_set() and b.event.is_set())
        assert (a.public, b.public) == ('{"id":"job-a"}', None)  # b by its status: its waiter reads the row
        assert not c.event.is_set()


def test_hears_a_worker_of_the_earlier_version_too(own_redis: EmbeddedRedis) -> None:
    """While a deployment is upgraded, an older worker announces one job a message on the earlier channel."""
    listener = Announcements(own_redis.url)
    client = redis.Redis.from_url(own_redis.url)
    with listener.watching("job") as watch:
        publish_until(client, earlier_waiter_channel(listener.token), announcement("job", "succeeded"),
                      watch.event.is_set)


def test_a_workers_pass_is_announced_to_each_holding_process_in_one_message(own_redis: EmbeddedRedis) -> None:
    """`JobEvents.finished`: the jobs each API process holds in one message on its channel, an unheld job to
    nobody."""
    from core.queue import make_celery
    from worker.events import JobEvents

    client = redis.Redis.from_url(own_redis.url)
    with client.pubsub() as observer:
        observer.psubscribe(waiter_channel("*"))
        assert observer.get_message(timeout=5)["type"] == "psubscribe"  # subscribed before anything is published
        JobEvents(client, make_celery(own_redis.url)).finished(
            [("a", "succeeded", "p1"), ("b", "failed", "p1"), ("c", "succeeded", None), ("d", "canceled", "p2")],
            {"a": {"id": "a", "status": "succeeded"}})
        heard = [observer.get_message(timeout=5) for _ in range(2)]
        assert observer.get_message(timeout=0.2) is None  # nothing more: c was announced to nobody
    assert {message["channel"].decode(): read_announcements(message["data"]) for message in heard} == {
        waiter_channel("p1"): [("a", '{"id":"a","status":"succeeded"}'), ("b", None)],
        waiter_channel("p2"): [("d", None)]}


def test_hears_its_own_channel_only(own_redis: EmbeddedRedis) -> None:
    """Two listeners stand for two API processes: a job announced to one wakes nobody in the other."""
    mine, other = Announcements(own_redis.url), Announcements(own_redis.url)
    assert mine.token != other.token
    client = redis.Redis.from_url(own_redis.url)
    with mine.watching("job") as here, other.watching("job") as there:
        other.start()
        eventually(other.subscribed.is_set)
        announce_until(client, mine, "job", here.event.is_set)
        # Then one to `other`: each connection gets its messages in the order they were published, so once it has
        # heard this one, it would have heard the job's had that been sent to it too.
        with other.watching("marker") as marker:
            announce_until(client, other, "marker", marker.event.is_set)
        assert not there.event.is_set()


def test_a_revocation_empties_the_key_cache_at_once(own_redis: EmbeddedRedis) -> None:
    from api.key_cache import Caller, KeyCache

    cache = KeyCache(trusted=lambda: listener.subscribed.is_set())
    listener = Announcements(own_redis.url, on_keys_revoked=cache.clear)
    listener.start()
    eventually(listener.subscribed.is_set)
    cache.put("hash", Caller("key-id", None), cache.generation())
    assert cache.get("hash") == Caller("key-id", None)
    redis.Redis.from_url(own_redis.url).publish(KEYS_REVOKED_CHANNEL, "1")
    eventually(lambda: cache.get("hash") is None)


def test_listens_again_after_redis_restarts(own_redis: EmbeddedRedis) -> None:
    listener = Announcements(own_redis.url)
    client = redis.Redis.from_url(own_redis.url)
    with listener.watching("before") as before:
        announce_until(client, listener, "before", before.event.is_set)
    own_redis.kill()
    eventually(lambda: not listener.subscribed.is_set())
    own_redis.start()
    with listener.watching("after") as after:
        announce_until(client, listener, "after", after.event.is_set)
