"""The API process's announcement token: one per process, whichever thread asks first."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from api import announcements
from api.announcements import Announcements


def test_threads_asking_at_once_get_one_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The listener thread and a request thread ask at the same moment when the process starts. The token's maker
    here waits (up to 2 s) for a second thread to be making one too: unless the first holds the others off, both
    make one and the process hears on one channel while its jobs name another."""
    both_making = threading.Barrier(2, timeout=2)

    def made_while_another_may_make() -> uuid.UUID:
        try:
            both_making.wait()
        except threading.BrokenBarrierError:  # nobody else is making one: as it should be
            pass
        return uuid.uuid4()

    monkeypatch.setattr(announcements, "uuid", SimpleNamespace(uuid4=made_while_another_may_make))
    listener = Announcements("redis://127.0.0.1:1/0")  # never started: no connection is made
    with ThreadPoolExecutor(2) as pool:
        tokens = set(pool.map(lambda _: listener.token, range(2)))
    assert len(tokens) == 1 and tokens == {listener.token}
