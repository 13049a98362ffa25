"""SQLite's one write lock: read-only sessions never wait for it, and an eager writer gets it as soon as it is
free rather than after SQLite's backoff."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import OperationalError

from migrations import run_migrations
from models.db import make_engine, make_read_session_factory, make_session_factory
from models.tables import Job


@pytest.fixture()
def url(tmp_path: Path) -> str:
    database_url = f"sqlite:///{tmp_path / 'locks.db'}"
    run_migrations(database_url)
    return database_url


def test_reads_do_not_wait_for_a_held_write_lock(url: str) -> None:
    with make_session_factory(make_engine(url))() as writer:
        writer.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock is held until commit
        engine = make_engine(url)

        @event.listens_for(engine, "connect")
        def _no_waiting(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA busy_timeout=0")  # fail at once, should the read need the lock

        with make_read_session_factory(engine)() as reader:
            assert list(reader.scalars(select(Job))) == []
        writer.commit()


def test_an_eager_writer_takes_the_lock_once_it_is_released(url: str) -> None:
    held = make_session_factory(make_engine(url))()
    held.execute(text("SELECT 1"))  # holds the write lock
    got_it = threading.Event()

    def write() -> None:
        with make_session_factory(make_engine(url, eager_writer=True))() as eager:
            eager.execute(text("SELECT 1"))
            got_it.set()
            eager.commit()

    thread = threading.Thread(target=write)
    thread.start()
    assert not got_it.wait(0.3)  # still held: the eager writer waits, it does not fail
    held.commit()
    held.close()
    assert got_it.wait(10)
    thread.join()


def test_an_eager_writer_gives_up_at_the_deadline_with_sqlalchemys_error(url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("models.db.SQLITE_BUSY_TIMEOUT_MS", 300)
    held = make_session_factory(make_engine(url))()
    held.execute(text("SELECT 1"))  # holds the write lock, and never lets go in time
    engine = make_engine(url, eager_writer=True)
    with pytest.raises(OperationalError, match="locked"), make_session_factory(engine)() as eager:
        eager.execute(text("SELECT 1"))
    held.commit()
    held.close()
    raw = engine.raw_connection()  # the same pooled connection, without a transaction's begin: its timeout is back
    try:
        assert raw.cursor().execute("PRAGMA busy_timeout").fetchone() == (300,)
    finally:
        raw.close()
