"""What a waiter channel carries: the job's id, then its JSON when small, its status otherwise."""

from __future__ import annotations

import json

from core.queue import ANNOUNCED_JOB_MAX_BYTES, announcement, read_announcement


def test_a_small_job_is_announced_whole_and_a_large_one_by_its_status() -> None:
    small = {"id": "j", "status": "succeeded", "output": [["é\nnext line"]]}
    job_id, public = read_announcement(announcement("j", "succeeded", small).encode())
    assert job_id == "j" and public is not None and json.loads(public) == small
    large = {"id": "j", "status": "succeeded", "output": ["x" * ANNOUNCED_JOB_MAX_BYTES]}
    assert announcement("j", "succeeded", large) == "j\nsucceeded"
    assert read_announcement(announcement("j", "succeeded", large).encode()) == ("j", None)
    assert read_announcement(announcement("k", "canceled").encode()) == ("k", None)
