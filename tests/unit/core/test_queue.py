"""What a job's channel carries: its JSON when small, its status otherwise."""

from __future__ import annotations

import json

from core.queue import ANNOUNCED_JOB_MAX_BYTES, announcement


def test_a_small_job_is_announced_whole_and_a_large_one_by_its_status() -> None:
    small = {"id": "j", "status": "succeeded", "output": [["é"]]}
    assert json.loads(announcement("succeeded", small)) == small
    large = {"id": "j", "status": "succeeded", "output": ["x" * ANNOUNCED_JOB_MAX_BYTES]}
    assert announcement("succeeded", large) == "succeeded"
    assert announcement("canceled") == "canceled"
