"""Engine and session factory for SQLite and PostgreSQL, with the per-dialect settings each needs."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, DateTime, Engine, Result, create_engine, event, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

from core.json_text import json_text, json_value

#: Pause between an eager writer's tries for SQLite's write lock.
EAGER_RETRY_S = 0.001
#: Execution option marking a connection's transactions as reads only.
READ_ONLY = "distilq_read_only"
#: Execution option of a SQLite connection whose statements each commit by themselves (no BEGIN): for a writer of
#: one statement, which then holds the write lock only while that statement runs (`each_statement_commits`).
EACH_STATEMENT_COMMITS = "distilq_each_statement_commits"
#: PostgreSQL's isolation level of a connection whose statements each commit by themselves (`each_statement_commits`).
AUTOCOMMIT = "AUTOCOMMIT"
#: How long a SQLite writer waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are always aware and in UTC; SQLite stores them naive, so add the zone back on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _begin_eagerly(connection: Any) -> None:
    """BEGIN IMMEDIATE, retried every millisecond until the write lock is free. SQLite's own busy handler sleeps
    ever longer (up to 100 ms a try), so a writer that waits behind a burst of short transactions keeps missing
    the moments the lock is free; the worker's claims and write-backs, which everyone's jobs wait on, should not.
    The tries go to the sqlite3 connection itself: through SQLAlchemy each statement costs ~15 µs more, and a
    refused try ~100 µs of its error's wrapping — the worker spent 6 % of its interpreter's time there
    while a batch file's check held the lock (BENCHMARKS.md, session 21). The last try, the deadline passed, is
    SQLAlchemy's: it raises SQLAlchemy's error, as every other statement would."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    raw = connection.connection.driver_connection
    raw.execute("PRAGMA busy_timeout=0")
    try:
        while time.monotonic() < deadline:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error):
                    break
            time.sleep(EAGER_RETRY_S)
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def _configure_sqlite(engine: Engine, eager_writer: bool) -> None:
    # Several processes (API, worker, beat) write one file: WAL lets readers run beside the writer, and
    # BEGIN IMMEDIATE takes the write lock up front so that a read-then-write transaction waits for it
    # (busy_timeout) instead of failing with SQLITE_BUSY when it tries to upgrade. Sessions made read-only
    # (`make_read_session_factory`) begin DEFERRED: they take no write lock, so many held requests re-reading
    # their job do not queue the worker's write-back behind them.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        if options.get(EACH_STATEMENT_COMMITS, False):
            return  # the driver is in autocommit mode (isolation_level None): each statement is its own transaction
        if options.get(READ_ONLY, False):
            connection.exec_driver_sql("BEGIN DEFERRED")
        elif eager_writer:
            _begin_eagerly(connection)
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


#: PostgreSQL connections a process's engine keeps, and opens beyond them under load: a server's max_connections
#: must cover POOL_SIZE + POOL_OVERFLOW for every API process, worker, webhook sender and beat (docker-compose.yml).
#: None beyond: a connection opened past the pool's size is closed as soon as it is returned while the pool is full,
#: so bursts of requests opened and closed connections all the time — 343–461 server sessions (each a forked
#: backend, and a connect and pre-ping in the API) for 3,200 held requests at 64 clients (BENCHMARKS.md, session
#: 32). The same 20 at most, all kept: a request beyond them waits for one (`pool_timeout`, 30 s).
POOL_SIZE, POOL_OVERFLOW = 20, 0


def make_engine(url: str, eager_writer: bool = False, pooled: bool = True) -> Engine:
    """`eager_writer`: on SQLite, this process's transactions retry for the write lock every millisecond rather
    than back off (the worker's; see `_begin_eagerly`). No effect on PostgreSQL. `pooled` False: on PostgreSQL a
    connection for each transaction, none kept (an API process's check processes, which write a chunk now and then:
    kept, theirs would count against max_connections beside the API's own)."""
    # A JSON column's value is stored as `json_text` writes it and read by `json_value`.
    codec: dict[str, Any] = {"json_serializer": json_text, "json_deserializer": json_value}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **codec)
        _configure_sqlite(engine, eager_writer)
        return engine
    if not pooled:
        return create_engine(url, poolclass=NullPool, **codec)
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, **codec)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def make_read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reads only: on SQLite they begin DEFERRED and take no write lock; on PostgreSQL each statement
    runs by itself (AUTOCOMMIT: no BEGIN and ROLLBACK round trips — under READ COMMITTED a transaction's statements
    each read what was committed when they began anyway). Do not write in one: on SQLite the write would take the
    lock mid-transaction, and fail if another writer committed since the read."""
    options: dict[str, Any] = {READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = AUTOCOMMIT
    return sessionmaker(engine.execution_options(**options), expire_on_commit=False)


def each_statement_commits(on: Session | Connection) -> None:
    """Makes the session's next transaction, or every transaction of the connection, one in which each statement
    commits by itself (nothing in a session or connection already in a transaction). For a caller whose writes are
    each one statement, and whose reads need no snapshot beyond one statement's.

    On SQLite, no BEGIN: a transaction of BEGIN IMMEDIATE, the statement and COMMIT holds the database's one write
    lock across each return to the interpreter between them — in a process of many threads, each a wait for the GIL
    of up to its switch interval, and every other writer (the worker's claims and write-backs) waits that long too;
    a statement that commits by itself takes and frees the lock inside one call into SQLite. On PostgreSQL,
    AUTOCOMMIT: no BEGIN and COMMIT (or ROLLBACK) round trips around the statement — a submission's four round
    trips became two, ~100 CPU-µs less of the API's and ~100 of the server's a job (BENCHMARKS.md, session 31)."""
    if on.in_transaction():
        return
    dialect = (on.dialect if isinstance(on, Connection) else on.get_bind().dialect).name
    options = _EACH_STATEMENT_OPTIONS.get(dialect)
    if options is None:
        return
    if isinstance(on, Connection):
        on.execution_options(**options)
    else:
        on.connection(execution_options=options)


#: A dialect's execution options for `each_statement_commits`.
_EACH_STATEMENT_OPTIONS: dict[str, dict[str, Any]] = {"sqlite": {EACH_STATEMENT_COMMITS: True},
                                                       "postgresql": {"isolation_level": AUTOCOMMIT}}


def in_transaction_again(connection: Connection) -> None:
    """A connection made one of statements that each commit (`each_statement_commits`) made one of transactions
    again, as the engine's are: for a write of several statements that must hold together (a row locked, then
    another written). Ends what the connection began."""
    connection.commit()
    if connection.dialect.name == "postgresql":
        connection.execution_options(isolation_level=connection.default_isolation_level)
    else:
        connection.execution_options(**{EACH_STATEMENT_COMMITS: False})


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched: how a compare-and-set learns whether it won."""
    return cast(CursorResult[Any], result).rowcount


def row_dicts(result: Result[Any], rename: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Each row of `result` as a dict of its columns' names (each renamed by `rename` where given). The names are
    read once and zipped with each row's tuple: a RowMapping builds the result's keys view again for each row's
    `items()` or `dict()` — a quarter of a 500-line claim's CPU (BENCHMARKS.md, session 23)."""
    names = [rename.get(name, name) for name in result.keys()] if rename else list(result.keys())
    for values in result:
        yield dict(zip(names, values, strict=True))


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


class ManyRows:
    """A statement run once per row over many rows, compiled once and run on the driver (executemany) with values
    converted here. SQLAlchemy's own executemany builds and converts every parameter of every row — ~70 µs a row
    of a job's columns, several times the database's own work. The rows of one run share many values (the time,
    the key, the batch, a status): a value that is the very object the last row gave is not converted again. Each
    is converted with its parameter type's own converter (`bind_processor`), so what is stored is what
    SQLAlchemy would store. For rows made afresh, whose shared values are not changed between rows."""

    def __init__(self, statement: Any, dialect: Dialect, keys: Sequence[str] | None = None) -> None:
        """`keys`: an INSERT's columns (its parameters are named after them); an UPDATE names its own."""
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        self.sql = compiled.string
        self.positional = bool(compiled.positiontup)
        #: The parameters' names, in the statement's order when it takes them by position.
        self.names = list(compiled.positiontup) if compiled.positiontup else list(compiled.binds)
        self.converters = {name: compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                           for name in self.names}
        #: The values the statement itself gives (a literal in a WHERE clause), taken where a row gives none.
        self.fixed = {name: compiled.binds[name].effective_value for name in self.names
                      if not compiled.binds[name].required}

    def values(self, row: Mapping[str, Any], last: dict[str, tuple[Any, Any]]) -> list[Any]:
        """The row's converted values, in the order of `names`; `last`: each parameter's last value and its
        conversion, in this run."""
        values = []
        for name in self.names:
            value = row[name] if name in row or name not in self.fixed else self.fixed[name]
            seen = last.get(name)
            if seen is None or seen[0] is not value:
                converter = self.converters[name]
                seen = last[name] = (value, value if converter is None else converter(value))
            values.append(seen[1])
        return values

    def _convert(self, row: Mapping[str, Any], last: dict[str, tuple[Any, Any]]) -> tuple[Any, ...] | dict[str, Any]:
        """The row's parameters as the driver takes them: by position or by name."""
        values = self.values(row, last)
        return tuple(values) if self.positional else dict(zip(self.names, values, strict=True))

    def run(self, connection: Connection, rows: Iterable[Mapping[str, Any]], per_call: int) -> int:
        """Runs the statement over `rows`, `per_call` rows a driver call (the rows are converted as they come:
        never all in memory); how many rows. Runs may share a ManyRows: each keeps its own last values."""
        count, chunk, last = 0, list[Any](), dict[str, tuple[Any, Any]]()
        for row in rows:
            chunk.append(self._convert(row, last))
            count += 1
            if len(chunk) == per_call:
                connection.exec_driver_sql(self.sql, chunk)
                chunk = []
        if chunk:
            connection.exec_driver_sql(self.sql, chunk)
        return count

    def run_one(self, connection: Connection, row: Mapping[str, Any]) -> CursorResult[Any]:
        """Runs the statement on one row (its rowcount, its RETURNING rows): what SQLAlchemy's `execute` would, less
        its per-execution work — the compiled-cache lookup, the parameters' processing, the execution context (a
        submission's `store.jobs.submit`, 5–15 % less CPU: BENCHMARKS.md, session 11)."""
        return connection.exec_driver_sql(self.sql, self._convert(row, {}))


class CopyRows:
    """Rows into a PostgreSQL table by one `COPY … FROM STDIN`, streamed in COPY's text form: no statement a row for
    either side to bind and run, as an executemany's INSERT is (a batch's 500 lines: 33.7 → 25.0 wall µs a row,
    11.5 → 3.4 of the client's CPU; BENCHMARKS.md, session 28). Each value is converted by its column type's own
    bind processor, so what is stored is what SQLAlchemy would store (a JSON column's value as psycopg's `Json`):
    the values of the INSERT of those columns, as `ManyRows` converts them (a value shared with the row before
    converted once)."""

    def __init__(self, table: Any, columns: Sequence[str], dialect: Dialect) -> None:
        """`table`: a Table; `columns`: the names of its columns each row gives, in any order."""
        self.insert = ManyRows(insert(table), dialect, columns)  # its parameters are named after the columns
        quote = dialect.identifier_preparer.quote
        self.sql = f"COPY {quote(table.name)} ({', '.join(quote(name) for name in self.insert.names)}) FROM STDIN"

    def run(self, connection: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
        """Copies `rows` (each a mapping of `columns`) in the connection's transaction; how many."""
        count, last = 0, dict[str, tuple[Any, Any]]()
        driver = connection.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(self.sql) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(self.insert.values(row, last))
                count += 1
        return count
