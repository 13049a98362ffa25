"""What a waiter channel carries: each job's id, then its JSON when small, its status otherwise; a pass's jobs of
one API process in one message, split only past the message's size."""

from __future__ import annotations

import json

import pytest

from core import queue
from core.queue import ANNOUNCED_JOB_MAX_BYTES, announcement, announcements, read_announcements


def test_a_small_job_is_announced_whole_and_a_large_one_by_its_status() -> None:
    small = {"id": "j", "status": "succeeded", "output": [["é\nnext line\u2028"]]}
    [(job_id, public)] = read_announcements(announcement("j", "succeeded", small).encode())
    assert job_id == "j" and public is not None and json.loads(public) == small
    large = {"id": "j", "status": "succeeded", "output": ["x" * ANNOUNCED_JOB_MAX_BYTES]}
    assert announcement("j", "succeeded", large) == "j\nsucceeded"
    assert read_announcements(announcement("j", "succeeded", large).encode()) == [("j", None)]
    assert read_announcements(announcement("k", "canceled").encode()) == [("k", None)]


def test_a_job_whose_metadata_orjson_refuses_is_announced_whole_all_the_same() -> None:
    job = {"id": "j", "status": "succeeded", "metadata": {"big": 2**70, "name": "é\nx"}}
    [(_, public)] = read_announcements(announcement("j", "succeeded", job).encode())
    assert public is not None and json.loads(public) == job


def test_many_jobs_ride_one_message_and_each_is_read_back() -> None:
    jobs = [(f"job-{i}", {"id": f"job-{i}", "output": [[f"line\n{i}"]]} if i % 2 else None) for i in range(5)]
    [message] = announcements(announcement(job_id, "failed", public) for job_id, public in jobs)
    read = read_announcements(message.encode())
    assert [job_id for job_id, _ in read] == [job_id for job_id, _ in jobs]
    for (_, public), (_, heard) in zip(jobs, read, strict=True):
        assert (heard is None) if public is None else (heard is not None and json.loads(heard) == public)


def test_a_message_is_split_past_its_size_keeping_each_job_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue, "ANNOUNCEMENT_MESSAGE_BYTES", 60)
    announced = [announcement(f"job-{i}", "succeeded", {"id": f"job-{i}", "pad": "x" * 20}) for i in range(5)]
    messages = list(announcements(announced))
    assert len(messages) > 1 and all(len(message) <= 60 for message in messages)
    heard = [job_id for message in messages for job_id, _ in read_announcements(message.encode())]
    assert heard == [f"job-{i}" for i in range(5)]
    assert list(announcements([])) == []


def test_a_message_not_of_ours_yields_what_pairs_up_and_never_raises() -> None:
    """The listener lives on whatever is published on its channel."""
    assert read_announcements(b"job-a\nsucceeded\nstray") == [("job-a", None)]
    assert read_announcements(b"\xff\xfe") == []
