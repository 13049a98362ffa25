"""The job store: the one module that changes a job's status. Every transition is a compare-and-set on the job
row inside the caller's transaction or its own, and records the webhook event it causes in that same transaction:

    submit → queued;  a batch's lines, an evaluation's examples → queued (at the files' lower priority);
    claim: queued → running (attempt + 1, lease);  renew the lease;
    finish: running → succeeded | failed (only while the claim holds);  cancel: queued | running → canceled;
    cancel a batch or an evaluation: its queued lines → canceled (running ones finish);
    a batch's check failed: its lines deleted, whatever their status (as if its file had never run);
    reclaim: running with an expired lease → queued, or failed `worker_lost` after the last attempt;
    requeue: a task's wake-up was lost → its first stale job marked as woken again (`beat` publishes one).

The reads of the API's routes are `store/job_reads.py`'s.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    String,
    Table,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from contract.job_json import job_to_public
from contract.requests import JobRequest, stored_inputs
from models.db import (
    CopyRows,
    ManyRows,
    each_statement_commits,
    in_transaction_again,
    row_dicts,
    rowcount,
    transaction,
)
from models.tables import (
    BATCH_PRIORITY,
    CANCELED,
    EVENT_COMPLETED,
    EVENT_STARTED,
    FAILED,
    INTERACTIVE,
    INTERACTIVE_PRIORITY,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    ApiKey,
    Job,
)
from webhooks import record_event

#: Webhook event ids a transition recorded, to be published once its transaction has committed.
Events = list[str]
Clock = Callable[[], datetime]


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used with another request body."""


class TooManyJobsInFlight(Exception):
    def __init__(self, in_flight: int) -> None:
        super().__init__(f"{in_flight} jobs queued or running")
        self.in_flight = in_flight


# --- submit -----------------------------------------------------------------------------------------------------

def request_hash(task: str, body: dict[str, Any]) -> str:
    """SHA-256 of the task and the canonical body: the same Idempotency-Key with another body is a conflict."""
    canonical = json.dumps([task, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _by_idempotency_key(connection: Connection, api_key_id: str, idempotency_key: str, digest: str,
                        now: datetime) -> JobAttributes | None:
    """The live job stored under this key; raises IdempotencyKeyReused when it was made from another body."""
    table = cast(Table, Job.__table__)
    result = connection.execute(select(table).where(table.c.api_key_id == api_key_id,
                                                    table.c.idempotency_key == idempotency_key))
    # Read to the end (the key is unique: one row at most), so that no statement is left open on the connection.
    found = list(row_dicts(result, _ATTRIBUTES))
    if not found:
        return None
    job = found[0]
    if job["idempotency_expires_at"] is not None and job["idempotency_expires_at"] <= now:
        # Expired: free the key for this new request.
        connection.execute(update(table).where(table.c.id == job["id"]).values(idempotency_key=None))
        connection.commit()
        return None
    if job["request_hash"] != digest:
        raise IdempotencyKeyReused(idempotency_key)
    return job


#: Column name of each attribute of Job (they differ where a name is reserved: `meta` is the `metadata` column).
_COLUMNS = {attr.key: attr.columns[0].name for attr in sa_inspect(Job).column_attrs}
#: Attribute name of each column of Job.
_ATTRIBUTES = {column: attribute for attribute, column in _COLUMNS.items()}
#: A job's attributes by name (`Job`'s, every one: None where unset): what `submit` returns, and what
#: `contract.job_json.job_to_public` reads as well as a row.
JobAttributes = dict[str, Any]
#: Every attribute of a job, None: what a new job's attributes are beside those `submit` sets — and the server's
#: defaults of the others (an interactive job is one line, none failed).
_UNSET: JobAttributes = dict.fromkeys(_COLUMNS)
_SERVER_DEFAULTS: JobAttributes = {"line_count": 1, "failed_lines": 0}


#: On PostgreSQL a submission checks its key's cap without locking the key while the key has more than this many
#: jobs of room (`submit`).
UNLOCKED_CAP_MARGIN = 64


def _in_flight(api_key_id: Any) -> Any:
    """The key's interactive jobs queued or running, as a scalar subquery (a batch's lines are bounded by the batch
    size, not by this cap), counted in the index of interactive jobs (`models.tables.INTERACTIVE`)."""
    # Two equalities, not IN: an IN list is an "expanding" parameter, rendered into the SQL at each execution
    # (~3 % of the API's CPU a job); both databases read the OR of equalities on one column as IN.
    return (select(func.count()).select_from(Job)
            .where(Job.api_key_id == api_key_id, or_(Job.status == QUEUED, Job.status == RUNNING), INTERACTIVE)
            .scalar_subquery())


@functools.cache
def _insert_if_room(dialect: Any, attributes: tuple[str, ...]) -> ManyRows:
    """INSERT INTO jobs (…) SELECT :v_… WHERE (jobs of :v_key in flight) < :v_cap, compiled once per dialect and set
    of attributes given (they differ only in the optional ones). On PostgreSQL RETURNING the id, as psycopg reports
    the rowcount of an INSERT … SELECT as -1; SQLite's rowcount is right, and RETURNING would hold its write lock
    until the row is fetched (the statement ends only then)."""
    table = cast(Table, Job.__table__)
    columns = [table.c[_COLUMNS[name]] for name in attributes]
    row = select(*[bindparam(f"v_{name}", type_=column.type).label(column.name)
                   for name, column in zip(attributes, columns, strict=True)])
    room = _in_flight(bindparam("v_key", type_=table.c.api_key_id.type)) < bindparam("v_cap", type_=Integer())
    statement = insert(table).from_select(columns, row.where(room))
    return ManyRows(statement if dialect.name == "sqlite" else statement.returning(table.c.id), dialect)


def submit(
    engine: Engine,
    *,
    task: str,
    model: str,
    api_key_id: str,
    body: JobRequest,
    raw_body: dict[str, Any],
    idempotency_key: str | None,
    idempotency_ttl_s: int,
    max_in_flight: int,
    now: datetime,
    job_id: str | None = None,
    token_ids: bytes | None = None,
    held_by: str | None = None,
) -> tuple[JobAttributes, bool]:
    """Stores a new `queued` job (id `job_id`, or a new one) and commits; returns it and whether it is new (False:
    an idempotent replay, also when a concurrent copy of the request committed first). Raises TooManyJobsInFlight
    when the key already has `max_in_flight` jobs queued or running. Publishing it is the caller's, after this
    returns.

    One INSERT … SELECT … WHERE (the key's jobs in flight) < cap: the cap is checked by the statement that
    inserts, so a writer holds SQLite's one write lock for a single statement. On PostgreSQL, concurrent
    statements each count what was committed when they began, so two may both see room: while the key is more
    than UNLOCKED_CAP_MARGIN jobs below its cap, the INSERT runs unlocked (the cap holds as long as fewer than that
    many of one key's submissions race at once); nearer, the key's row is locked first, so that they count in
    turn. Locking always made one key's submissions wait for each other's commit — its WAL flush included — and
    held one key to ~120 jobs/s on a 2-core machine (BENCHMARKS.md). It runs on a connection of its own, and
    the returned job's attributes are those it stored, not read back: no ORM session, no ORM object (together
    ~5 % of the API's CPU a job: BENCHMARKS.md, session 24). `token_ids`: the inputs' ids from the API's check,
    for the worker (`contract.tokens.pack_token_ids`); `held_by`: the API process holding the request
    (`Job.held_by`)."""
    # Only an Idempotency-Key needs the body's hash: canonical JSON and SHA-256 are ~5 % of the API's CPU a job.
    digest = request_hash(task, raw_body) if idempotency_key is not None else ""
    with engine.connect() as connection:
        # No write below needs another beside it in one transaction (but near the cap on PostgreSQL): each commits
        # by itself — on SQLite holding the write lock only while it runs, on PostgreSQL with no BEGIN and COMMIT.
        each_statement_commits(connection)
        if idempotency_key is not None:
            found = _by_idempotency_key(connection, api_key_id, idempotency_key, digest, now)
            if found is not None:
                return found, False
        inputs, parameters = stored_inputs(body)
        fields: dict[str, Any] = {
            "id": job_id or str(uuid.uuid4()), "api_key_id": api_key_id, "task": task, "model": model,
            "status": QUEUED, "input": inputs, "parameters": parameters, "n_inputs": body.n_inputs(),
            "created_at": now, "attempts": 0, "priority": INTERACTIVE_PRIORITY, "webhook": body.webhook,
            "webhook_events_filter": list(body.webhook_events_filter), "meta": body.metadata,
            "token_ids": token_ids, "held_by": held_by,
        }
        if idempotency_key is not None:
            fields.update(idempotency_key=idempotency_key, request_hash=digest,
                          idempotency_expires_at=now + timedelta(seconds=idempotency_ttl_s))
        sqlite = connection.dialect.name == "sqlite"
        present = {name: value for name, value in fields.items() if value is not None}
        statement = _insert_if_room(connection.dialect, tuple(present))
        values = {f"v_{name}": value for name, value in present.items()}

        def insert_if_below(cap: int) -> bool:
            result = statement.run_one(connection, {**values, "v_key": api_key_id, "v_cap": cap})
            return rowcount(result) == 1 if sqlite else result.first() is not None

        try:
            if sqlite:  # one writer at a time: the count is exact
                inserted = insert_if_below(max_in_flight)
            else:
                inserted = (max_in_flight > UNLOCKED_CAP_MARGIN
                            and insert_if_below(max_in_flight - UNLOCKED_CAP_MARGIN))
                if not inserted:  # near the cap: the key's row locked, so that submissions count in turn
                    in_transaction_again(connection)  # the lock held until the INSERT commits
                    connection.execute(select(ApiKey.id).where(ApiKey.id == api_key_id).with_for_update())
                    inserted = insert_if_below(max_in_flight)
            if not inserted:
                in_flight = connection.scalar(select(_in_flight(api_key_id))) or 0
                connection.rollback()
                raise TooManyJobsInFlight(in_flight)
            connection.commit()
        except IntegrityError:
            # Another copy of this request committed first: answer with its job.
            connection.rollback()
            if idempotency_key is None:
                raise
            found = _by_idempotency_key(connection, api_key_id, idempotency_key, digest, now)
            if found is None:
                raise
            return found, False
    return {**_UNSET, **_SERVER_DEFAULTS, **fields}, True


def evaluation_example(*, evaluation_id: str, line: int, task: str, model: str, api_key_id: str,
                       inputs: dict[str, Any], parameters: dict[str, Any], n_inputs: int, gold: dict[str, Any],
                       now: datetime) -> dict[str, Any]:
    """The job row of an evaluation's example (column: value), for `add_file_lines`: its gold in `meta`."""
    fields = {
        "id": str(uuid.uuid4()), "api_key_id": api_key_id, "task": task, "model": model, "status": QUEUED,
        "input": inputs, "parameters": parameters, "n_inputs": n_inputs, "created_at": now, "attempts": 0,
        "priority": BATCH_PRIORITY, "webhook_events_filter": [], "meta": gold, "evaluation_id": evaluation_id,
        "batch_line": line,
    }
    return {_COLUMNS[name]: value for name, value in fields.items()}


#: A file's lines inserted per driver call (SQLite).
LINES_PER_INSERT = 500


def add_file_lines(session: Session, rows: Iterable[dict[str, Any]]) -> int:
    """Inserts the lines of a batch's or an evaluation's file (rows of `store.batch_rows.rows` or
    `evaluation_example`, each with the same columns) as queued jobs in the caller's transaction — on PostgreSQL by
    one COPY, elsewhere LINES_PER_INSERT per driver call (the rows are made as the file is read: never all in
    memory); how many."""
    connection = session.connection()
    lines = iter(rows)
    first = next(lines, None)
    if first is None:
        return 0
    every = itertools.chain([first], lines)
    if connection.dialect.name == "postgresql":
        return _line_copier(connection.dialect, tuple(first)).run(connection, every)
    return _line_writer(connection.dialect, tuple(first)).run(connection, every, LINES_PER_INSERT)


@functools.cache
def _line_writer(dialect: Any, columns: tuple[str, ...]) -> ManyRows:
    return ManyRows(insert(cast(Table, Job.__table__)), dialect, columns)


@functools.cache
def _line_copier(dialect: Any, columns: tuple[str, ...]) -> CopyRows:
    return CopyRows(Job.__table__, columns, dialect)


def cancel_batch_lines(session: Session, batch_id: str, now: datetime) -> int:
    """Cancels the batch's queued rows of lines in the caller's transaction (running ones finish); how many rows.
    Batch lines have no webhooks of their own: no events."""
    return _cancel_lines(session, Job.batch_id == batch_id, now, "batch_cancelled",
                         "the batch was cancelled before this line ran")


def cancel_evaluation_examples(session: Session, evaluation_id: str, now: datetime) -> int:
    """Cancels the evaluation's queued examples in the caller's transaction (running ones finish); how many."""
    return _cancel_lines(session, Job.evaluation_id == evaluation_id, now, "evaluation_canceled",
                         "the evaluation was canceled before this example ran")


def delete_batch_lines(session: Session, batch_id: str) -> int:
    """Deletes every line of a batch whose check failed, queued, running or finished, in the caller's transaction
    (a worker's write-back to one then finds no row and keeps nothing; lines have no webhook events); how many."""
    return rowcount(session.execute(delete(Job).where(Job.batch_id == batch_id)
                                    .execution_options(synchronize_session=False)))


def _cancel_lines(session: Session, which: Any, now: datetime, code: str, message: str) -> int:
    return rowcount(session.execute(
        update(Job).where(which, Job.status == QUEUED)
        .values(status=CANCELED, completed_at=now, error={"code": code, "message": message})
        .execution_options(synchronize_session=False)))


# --- claim, renew, finish (the worker) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """A worker's hold on one job: valid while the row is `running` with this attempt number."""

    #: The job's attributes (by attribute name) as the claim left them; the finished job's JSON is built from them
    #: without a read.
    row: dict[str, Any]
    #: When the claim was made; never before `created_at` (a job stamped by a clock running ahead starts then).
    claimed_at: datetime

    @property
    def job_id(self) -> str:
        return str(self.row["id"])

    @property
    def attempt(self) -> int:
        return int(self.row["attempts"])

    @property
    def task(self) -> str:
        return str(self.row["task"])

    @property
    def input(self) -> dict[str, Any]:
        value: dict[str, Any] = self.row["input"]
        return value

    @property
    def parameters(self) -> dict[str, Any]:
        value: dict[str, Any] = self.row["parameters"]
        return value

    @property
    def created_at(self) -> datetime:
        created: datetime = self.row["created_at"]
        return created

    @property
    def n_inputs(self) -> int:
        return int(self.row["n_inputs"])

    @property
    def webhook(self) -> str | None:
        return self.row["webhook"]

    @property
    def token_ids(self) -> bytes | None:
        """The inputs' token ids from the API's check (`contract.tokens.pack_token_ids`), if it stored them."""
        value = self.row.get("token_ids")
        return None if value is None else bytes(value)

    @property
    def from_file(self) -> bool:
        """Whether the job is a line of a file (a batch's or an evaluation's), which no request holds: not
        announced, not logged one by one, and run at the files' lower priority."""
        return bool(self.row["priority"] != INTERACTIVE_PRIORITY)

    @property
    def batch_id(self) -> str | None:
        """The batch whose line this is (an interactive job's claim reads every column: None there)."""
        return self.row.get("batch_id")

    @property
    def evaluation_id(self) -> str | None:
        return self.row.get("evaluation_id")

    @property
    def queue_ms(self) -> float:
        """From submission to this claim; never negative (`claimed_at` is at least `created_at`)."""
        return (self.claimed_at - self.created_at).total_seconds() * 1000


@dataclass(frozen=True)
class Outcome:
    claim: Claim
    output: list[Any] | None = None
    error: dict[str, str] | None = None
    #: A batch's row: how many of its lines failed (their errors are in `output`: `store/batch_rows.py`).
    failed_lines: int = 0


#: What a claim of a file's line returns (`Claim`'s attributes): a line's finished JSON is never built (the file's
#: output is made from its row), and each column returned is a value read and converted (JSON parsed, times
#: parsed) — for a 500-line pass, a third of the claim's CPU went to columns nothing read.
_LINE_CLAIMED = ("id", "attempts", "task", "input", "parameters", "created_at", "n_inputs", "webhook", "token_ids",
                 "priority", "batch_id", "evaluation_id")


def _unindexed_status(table: Table) -> Any:
    """The status as an expression no index holds (`status || ''`), for a statement that finds its rows by their ids
    and checks their status. Given `status = 'queued'`, SQLite's planner (no statistics) looked a claim's rows up by
    the status index, walking every queued job — a batch's 10,000 lines: 2.4 ms a claim, 50,000: 26 ms, against 0.1
    by the primary key — and PostgreSQL's did too before its statistics knew of the queued rows (a bitmap of the
    status index ANDed with the key's). The expression keeps both on the key. (Not for the write-back's look at its
    claims, `status = 'running'`: there the status index walks the running jobs only, a few passes' worth.)"""
    return table.c.status.op("||")("")


def _ids_among(table: Table, dialect_name: str) -> ColumnElement[bool]:
    """`id` among the list :ids. On PostgreSQL one array parameter (`id = ANY(:ids)`): the statement's text is the
    same for any number of ids, so psycopg parses it once and prepares it, and the server plans it once — an IN of
    500 expanded parameters was a new statement at every pass, parsed by psycopg (~2 ms), by the server and
    planned (a 500-line write-back's check of its claims took a third of its time: BENCHMARKS.md, session 28).
    Elsewhere an expanding IN (SQLite has no arrays; its statements are cheap to prepare)."""
    if dialect_name == "postgresql":
        return table.c.id == any_(bindparam("ids", type_=ARRAY(String())))
    return table.c.id.in_(bindparam("ids", expanding=True))


@functools.cache
def _claim_statement(lines: bool, dialect_name: str) -> Any:
    """UPDATE jobs SET running… WHERE id among :ids AND status = 'queued' RETURNING every column (interactive jobs,
    whose finished JSON is built from the claim) or `_LINE_CLAIMED` (`lines`), built once per dialect."""
    table = cast(Table, Job.__table__)
    now = bindparam("now", type_=table.c.started_at.type)
    return (
        update(table)
        .where(_ids_among(table, dialect_name), _unindexed_status(table) == QUEUED)
        .values(
            status=RUNNING,
            attempts=table.c.attempts + 1,
            started_at=func.coalesce(table.c.started_at, case((table.c.created_at > now, table.c.created_at),
                                                               else_=now)),
            lease_until=bindparam("lease_until", type_=table.c.lease_until.type),
            claimed_by=bindparam("worker", type_=table.c.claimed_by.type),
        )
        .returning(*([table.c[_COLUMNS[name]] for name in _LINE_CLAIMED] if lines else table.c))
    )


def _claim(session: Session, job_ids: list[str], line_ids: list[str], clock: Clock, lease_s: int,
           worker: str | None) -> tuple[list[Claim], Events]:
    """Claims interactive jobs (`job_ids`) and files' lines (`line_ids`)."""
    # The time is read once the transaction holds its lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: after the rows'
    # SKIP LOCKED select), so every job it can claim was committed — and stamped `created_at` — before it. A job
    # stamped later still (another host's clock running ahead) starts when it was created, never before.
    connection = session.connection()
    now = clock()
    claims = []
    for ids, lines in ((job_ids, False), (line_ids, True)):
        if not ids:
            continue
        result = connection.execute(_claim_statement(lines, connection.dialect.name),
                                    {"ids": ids, "now": now, "worker": worker,
                                     "lease_until": now + timedelta(seconds=lease_s)})
        for row in row_dicts(result, _ATTRIBUTES):
            claims.append(Claim(row, max(now, row["created_at"])))
    # `job.started` once per job: a retry after a lost worker is not a new start.
    events = [record_event(session, c.job_id, EVENT_STARTED, now) for c in claims if c.webhook and c.attempt == 1]
    return claims, [e for e in events if e]


@dataclass(frozen=True)
class ClaimedBatch:
    """What one claim took: the claims, their `job.started` events, and whether queued jobs were left behind."""

    claims: list[Claim]
    events: Events
    more_queued: bool

    @property
    def n_inputs(self) -> int:
        return sum(claim.n_inputs for claim in self.claims)


@functools.cache
def _candidates_statement() -> Any:
    """The queued jobs of :task, interactive ones first, then the oldest first, at most :limit, built once."""
    return (select(Job.id, Job.n_inputs, Job.priority)
            .where(Job.status == QUEUED, Job.task == bindparam("task"))
            .order_by(Job.priority, Job.created_at)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True))


def claim_more(
    sessions: sessionmaker[Session], task: str, max_inputs: int, clock: Clock, lease_s: int,
    worker: str | None = None, oversized_alone: bool = True, max_line_inputs: int | None = None,
    cap_lines: bool = False,
) -> ClaimedBatch:
    """Claims the oldest queued jobs of `task` whose inputs fit in `max_inputs`; when the oldest alone is larger,
    it alone (the engine splits it into passes), unless `oversized_alone` is False (a batch being topped up).
    Interactive jobs come first; lines of batch files take at most `max_line_inputs` of the inputs when the claim
    takes an interactive job too, or when `cap_lines` (interactive jobs are about); else as many as fit. On
    PostgreSQL the candidate rows are locked with SKIP LOCKED so that workers claiming at once take disjoint
    jobs; SQLite serialises writers."""
    if max_inputs <= 0:
        return ClaimedBatch([], [], False)
    with transaction(sessions) as session:
        # One past the budget: whether any job is left behind.
        candidates = session.connection().execute(_candidates_statement(),
                                                  {"task": task, "limit": max_inputs + 1}).all()
        chosen: list[tuple[str, int]] = []  # (id, priority)
        budget = max_inputs
        line_cap = max_line_inputs
        for job_id, n_inputs, priority in candidates:
            if priority != INTERACTIVE_PRIORITY and line_cap is not None:
                # At the first line (interactive jobs come first): whether this claim holds an interactive job.
                if cap_lines or chosen:
                    budget = min(budget, line_cap)
                line_cap = None
            if n_inputs > budget:
                if not chosen and oversized_alone:
                    chosen.append((job_id, priority))
                break
            chosen.append((job_id, priority))
            budget -= n_inputs
        more_queued = len(candidates) > len(chosen)
        if not chosen:
            return ClaimedBatch([], [], more_queued)
        claims, events = _claim(session, [job_id for job_id, priority in chosen if priority == INTERACTIVE_PRIORITY],
                                [job_id for job_id, priority in chosen if priority != INTERACTIVE_PRIORITY], clock,
                                lease_s, worker)
    return ClaimedBatch(claims, events, more_queued)


def renew_leases(sessions: sessionmaker[Session], claims: list[Claim], now: datetime, lease_s: int) -> int:
    """Extends the lease of every job whose claim still holds; returns how many that was."""
    with transaction(sessions) as session:
        return rowcount(
            session.execute(
                update(Job)
                .where(tuple_(Job.id, Job.attempts).in_([(c.job_id, c.attempt) for c in claims]),
                       Job.status == RUNNING)
                .values(lease_until=now + timedelta(seconds=lease_s))
                .execution_options(synchronize_session=False)
            )
        )


@dataclass(frozen=True)
class Finished:
    """A job written back: its id, status, the API process holding its request (`Job.held_by`; None for a line of a
    batch's or an evaluation's file, which no request holds: the file's output is its answer), and — for a held job
    only — its JSON as GET /v1/jobs/{id} now shows it, for that process's announcement."""

    job_id: str
    status: str
    held_by: str | None
    public: dict[str, Any] | None


#: What a write-back sets on a job (its attribute names, which are also its column names).
_WRITTEN = ("status", "output", "error", "queue_ms", "completed_at", "lease_until", "inference_ms", "batch_size",
            "token_ids", "failed_lines")


@functools.cache
def _finish_statements(dialect: Any) -> tuple[Any, ManyRows]:
    """(the (id, attempts) of those of :ids still running — locked, so that no cancel slips in before the write;
    the UPDATE run once per job, executemany), built once per dialect."""
    table = cast(Table, Job.__table__)
    held = (select(table.c.id, table.c.attempts)
            .where(_ids_among(table, dialect.name), table.c.status == RUNNING)
            .with_for_update())
    write = (update(table).where(table.c.id == bindparam("b_id"))
             .values(**{name: bindparam(f"b_{name}") for name in _WRITTEN}))
    return held, ManyRows(write, dialect)


def finish(
    sessions: sessionmaker[Session], outcomes: list[Outcome], now: datetime, batch_size: int, inference_ms: float
) -> tuple[list[Finished], Events]:
    """Writes every outcome in one transaction of two statements (which claims still hold, then one UPDATE run
    over all of them); returns those whose claim still held (a job canceled or handed to another worker meanwhile
    keeps what it has), with their JSON built from the claim and the outcome, and their `job.completed` events."""
    if not outcomes:
        return [], []
    by_id = {outcome.claim.job_id: outcome for outcome in outcomes}
    with transaction(sessions) as session:
        connection = session.connection()
        held_statement, write = _finish_statements(connection.dialect)
        # A claim holds while its job runs at its attempt: one retried since by another worker does not.
        held = {job_id for job_id, attempts in connection.execute(held_statement, {"ids": list(by_id)})
                if attempts == by_id[job_id].claim.attempt}
        changes: dict[str, dict[str, Any]] = {
            job_id: {"status": FAILED if outcome.error is not None else SUCCEEDED, "output": outcome.output,
                     "error": outcome.error, "queue_ms": outcome.claim.queue_ms, "completed_at": now,
                     "lease_until": None, "inference_ms": inference_ms, "batch_size": batch_size,
                     "token_ids": None, "failed_lines": outcome.failed_lines}
            for job_id, outcome in by_id.items() if job_id in held
        }
        if changes:
            write.run(connection, ({"b_id": job_id, **{f"b_{k}": v for k, v in change.items()}}
                                   for job_id, change in changes.items()), len(changes))
        events = [record_event(session, job_id, EVENT_COMPLETED, now) for job_id in changes
                  if by_id[job_id].claim.webhook]
    finished = []
    for job_id, change in changes.items():
        claim = by_id[job_id].claim
        held_by = claim.row.get("held_by")  # a line's claim reads no such column: nobody holds a line
        finished.append(Finished(job_id, str(change["status"]), held_by,
                                 job_to_public({**claim.row, **change}) if held_by else None))
    return finished, [event for event in events if event]


# --- cancel (the API) --------------------------------------------------------------------------------------------

def cancel(session: Session, job_id: str, now: datetime) -> tuple[bool, str | None]:
    """Cancels the job if it is queued or running, and commits; returns whether it changed and its
    `job.completed` event. A worker finishing at the same moment wins or loses cleanly, never half-way."""
    changed = rowcount(session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_((QUEUED, RUNNING)))
        .values(status=CANCELED, completed_at=now, lease_until=None)
    ))
    event = record_event(session, job_id, EVENT_COMPLETED, now) if changed else None
    session.commit()
    return bool(changed), event


# --- reclaim, requeue, expire keys (`beat`) ----------------------------------------------------------------------

def running_workers(sessions: sessionmaker[Session]) -> set[str]:
    """The workers that hold running jobs."""
    with sessions() as session:
        return set(session.scalars(select(Job.claimed_by).where(Job.status == RUNNING, Job.claimed_by.is_not(None))
                                   .distinct()))


def reclaim_expired(
    sessions: sessionmaker[Session], now: datetime, max_attempts: int, limit: int,
    dead_workers: Collection[str] = (),
) -> tuple[list[tuple[str, str, str | None]], list[tuple[str, str]], Events]:
    """Running jobs whose lease expired or whose worker is known dead: back to `queued`, or `failed` with
    `worker_lost` after `max_attempts`, so that a poison input cannot loop. Returns (failed (id, status, the API
    process holding its request), requeued (id, task), webhook events)."""
    failed: list[tuple[str, str, str | None]] = []
    requeued: list[tuple[str, str]] = []
    events: Events = []
    with transaction(sessions) as session:
        expired = session.execute(
            select(Job.id, Job.attempts, Job.task, Job.held_by)
            .where(Job.status == RUNNING, or_(Job.lease_until < now, Job.claimed_by.in_(list(dead_workers))))
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for job_id, attempts, task, held_by in expired:
            still_held = update(Job).where(Job.id == job_id, Job.status == RUNNING, Job.attempts == attempts)
            if attempts >= max_attempts:
                error = {"code": "worker_lost", "message": f"the worker running this job was lost {attempts} times"}
                if rowcount(session.execute(still_held.values(status=FAILED, error=error, completed_at=now,
                                                              lease_until=None))):
                    failed.append((job_id, FAILED, held_by))
                    event = record_event(session, job_id, EVENT_COMPLETED, now)
                    events += [event] if event else []
            elif rowcount(session.execute(still_held.values(status=QUEUED, lease_until=None, claimed_by=None,
                                                            published_at=now))):
                requeued.append((job_id, task))
    return failed, requeued, events


def take_stale_queued(sessions: sessionmaker[Session], now: datetime, older_than: timedelta,
                      tasks: Collection[str]) -> list[tuple[str, str]]:
    """Per task, the first queued job (in claim order) not woken for `older_than` — its wake-up was lost, or its
    task's backlog has waited that long — marked woken now; (id, task). One job per task is enough: a wake-up drains
    the task's whole backlog. Each look is one step down the claim index (status, task, priority, created_at), not
    a scan of a 50,000-line batch, and marks one row."""
    stale = []
    with transaction(sessions) as session:
        for task in tasks:
            found = session.execute(
                select(Job.id).where(Job.status == QUEUED, Job.task == task,
                                     func.coalesce(Job.published_at, Job.created_at) < now - older_than)
                .order_by(Job.priority, Job.created_at).limit(1)).scalar()
            if found is not None:
                stale.append((found, task))
        if stale:
            session.execute(update(Job).where(Job.id.in_([job_id for job_id, _ in stale]), Job.status == QUEUED)
                            .values(published_at=now))
    return stale


def free_idempotency_keys(sessions: sessionmaker[Session], now: datetime) -> int:
    """Idempotency keys past their time to live may be used again; returns how many were freed. One statement on
    the index of the keys still held (`ix_jobs_idempotency_expires`), committing by itself: every sweep runs it, and
    it held SQLite's write lock across a scan of the whole table while it had neither."""
    with sessions() as session:
        each_statement_commits(session)
        freed = rowcount(session.execute(
            update(Job).where(Job.idempotency_key.is_not(None), Job.idempotency_expires_at < now)
            .values(idempotency_key=None)
        ))
        session.commit()
        return freed
