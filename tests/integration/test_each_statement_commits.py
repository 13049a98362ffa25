"""`models.db.each_statement_commits` and `in_transaction_again`, on each database the service runs on: what a
connection made so writes is seen by every other as soon as the statement ran (on PostgreSQL, no BEGIN and COMMIT
round trips around it); made one of transactions again, its writes are seen once it commits, not before. And the
API's read sessions (`make_read_session_factory`): no transaction left open by a read on PostgreSQL, no write lock
taken on SQLite."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, func, insert, select

from core.clock import utcnow
from models.db import each_statement_commits, in_transaction_again, make_engine, make_read_session_factory
from models.tables import ApiKey


def _key(name: str) -> dict[str, object]:
    return {"id": str(uuid.uuid4()), "name": name, "prefix": "dq_test", "key_hash": uuid.uuid4().hex * 2,
            "webhook_secret": "whsec_test", "created_at": utcnow()}


def _seen(engine: Engine, name: str) -> int:
    with engine.connect() as reader:
        each_statement_commits(reader)  # on SQLite no BEGIN IMMEDIATE: it would wait for the writer's lock
        return reader.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.name == name)) or 0


def test_each_statement_commits_by_itself_until_made_one_of_transactions_again(backend: tuple[str, str]) -> None:
    writer, reader = make_engine(backend[0]), make_engine(backend[0])
    name = f"commits-{uuid.uuid4().hex[:8]}"
    try:
        with writer.connect() as connection:
            each_statement_commits(connection)
            connection.execute(insert(ApiKey).values(**_key(name)))
            assert _seen(reader, name) == 1  # committed by itself: no commit was asked for
            in_transaction_again(connection)
            connection.execute(insert(ApiKey).values(**_key(name)))
            assert _seen(reader, name) == 1  # inside a transaction now: not seen before it commits
            connection.commit()
            assert _seen(reader, name) == 2
        with writer.connect() as connection:  # a connection back from the pool is the engine's as ever
            connection.execute(insert(ApiKey).values(**_key(name)))
            assert _seen(reader, name) == 2
            connection.rollback()
        assert _seen(reader, name) == 2
    finally:
        writer.dispose()
        reader.dispose()


def test_a_read_session_leaves_no_transaction_open_nor_a_writer_waiting(backend: tuple[str, str]) -> None:
    engine = make_engine(backend[0])
    name = f"reads-{uuid.uuid4().hex[:8]}"
    try:
        with make_read_session_factory(engine)() as session:
            assert session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.name == name)) == 0
            driver = session.connection().connection.driver_connection
            if engine.dialect.name == "postgresql":
                from psycopg.pq import TransactionStatus

                assert driver.info.transaction_status == TransactionStatus.IDLE  # no BEGIN was sent
            with engine.begin() as writer:  # SQLite: BEGIN IMMEDIATE, which a read's lock would make wait
                writer.execute(insert(ApiKey).values(**_key(name)))
            assert session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.name == name)) == (
                1 if engine.dialect.name == "postgresql" else 0)  # SQLite's read keeps its snapshot until it ends
    finally:
        engine.dispose()
