"""The SQL tables: API keys, jobs, the files, batches and evaluations. The job row is the only record of a job; a
batch's lines and an evaluation's examples are jobs of that batch or evaluation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, UTCDateTime

#: JSON as written: SQLite's TEXT, PostgreSQL's `json` (its text, checked as JSON when stored). Not `jsonb`, which
#: parses a value into its binary form when stored and prints it again when read — a job's output (2 KB of top-k
#: lists a fill-mask input) is written once and only ever read whole, never queried inside — and which orders an
#: object's keys by length: a job's outputs and metadata came back from PostgreSQL in another order than they were
#: written, and than SQLite gives (migration 0014).
JSONType = JSON()

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED)
TERMINAL_STATUSES = (SUCCEEDED, FAILED, CANCELED)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    #: The first characters of the key, to tell keys apart in listings; never enough to use it.
    prefix: Mapped[str] = mapped_column(String(16))
    #: SHA-256 of the whole key, hex. The key itself is never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    webhook_secret: Mapped[str] = mapped_column(String(128))
    #: After a rotation the old secret still signs (beside the new one) until this time.
    previous_webhook_secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


#: Workers claim lower first (`Job.priority`): interactive jobs before the lines of files.
INTERACTIVE_PRIORITY, BATCH_PRIORITY = 0, 1

#: Rows whose idempotency key is still held (the partial index beat's sweep searches).
_KEY_HELD = text("idempotency_key IS NOT NULL")
#: The lines of a batch's file, and the examples of an evaluation: the indexes that find a file's rows hold only
#: them, so that an interactive job's insert, claim and write-back touch none of those four indexes (nor a batch's
#: line the evaluations' two, nor an example the batches'). Every query of them names its batch or evaluation (`=`),
#: which implies the condition: SQLite's and PostgreSQL's planners use them as before.
OF_BATCH = text("batch_id IS NOT NULL")
OF_EVALUATION = text("evaluation_id IS NOT NULL")
#: Interactive jobs, not a file's lines: the index a key's jobs in flight are counted by holds only them (and the
#: Idempotency-Keys' only the rows that hold one, which no line does), so that a line's insert, claim and write-back
#: write neither's entries — on PostgreSQL, where a change of an indexed column writes an entry into every index
#: whose condition the row meets, 7 entries a line's row change became 5 (BENCHMARKS.md, session 28). A literal,
#: so that the planners read a query stating it (`= 0`, not `= :param`) as implying it.
INTERACTIVE = text(f"priority = {INTERACTIVE_PRIORITY}")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # A key's Idempotency-Key names one job: the rows that hold one (no line holds one).
        Index("uq_jobs_api_key_idempotency_key", "api_key_id", "idempotency_key", unique=True,
              sqlite_where=_KEY_HELD, postgresql_where=_KEY_HELD),
        Index("ix_jobs_api_key_created", "api_key_id", "created_at", "id"),
        Index("ix_jobs_status_task_priority_created", "status", "task", "priority", "created_at"),
        Index("ix_jobs_api_key_status_interactive", "api_key_id", "status", sqlite_where=INTERACTIVE,
              postgresql_where=INTERACTIVE),
        # With the line: a poll counts the lines ended beyond what the batch's files hold (`batches.request_counts`)
        Index("ix_jobs_batch_status", "batch_id", "status", "batch_line", sqlite_where=OF_BATCH,
              postgresql_where=OF_BATCH),
        Index("ix_jobs_batch_line", "batch_id", "batch_line", sqlite_where=OF_BATCH, postgresql_where=OF_BATCH),
        Index("ix_jobs_evaluation_line", "evaluation_id", "batch_line", sqlite_where=OF_EVALUATION,
              postgresql_where=OF_EVALUATION),
        Index("ix_jobs_evaluation_status", "evaluation_id", "status", sqlite_where=OF_EVALUATION,
              postgresql_where=OF_EVALUATION),
        # The keys still held, by expiry: beat's sweep that frees them reads only those due, never the table.
        Index("ix_jobs_idempotency_expires", "idempotency_expires_at", sqlite_where=_KEY_HELD,
              postgresql_where=_KEY_HELD),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    task: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    input: Mapped[dict[str, Any]] = mapped_column(JSONType)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType)
    #: Sequences the job puts through the model (strings or question/context pairs); sizes batches.
    n_inputs: Mapped[int] = mapped_column(Integer)
    output: Mapped[list[Any] | None] = mapped_column(JSONType, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    queue_ms: Mapped[float | None] = mapped_column(nullable=True)
    inference_ms: Mapped[float | None] = mapped_column(nullable=True)
    batch_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: A running job belongs to its worker until then; `beat` hands it on after.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The worker (presence name, `host:pid`) that holds the running job; `beat` hands it on once that worker is
    #: known dead, before the lease runs out.
    claimed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: When `beat` last published a wake-up for the job (its own was lost); None: never needed.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The API process holding the request that submitted the job (`Prefer: wait`), by its announcement token: its
    #: finish is announced to that process alone (`core.queue.waiter_channel`). None: nobody holds it, and nothing
    #: is announced.
    held_by: Mapped[str | None] = mapped_column(String(64), nullable=True)

    webhook: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_events_filter: Mapped[list[str]] = mapped_column(JSONType)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)

    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: SHA-256 of the task and the canonical body: the same key with another body is a conflict.
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    idempotency_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    #: Workers claim lower first: INTERACTIVE (0) jobs before the lines of files (BATCH_PRIORITY).
    priority: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    #: A row of a batch's lines (`store/batch_rows.py`): its batch, the line number in the input file (from 1) of
    #: its first line, how many consecutive lines it holds, and how many of them failed once it ran (a row failed or
    #: cancelled whole fails them all). Other jobs: one line of their own.
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"), nullable=True)
    batch_line: Mapped[int | None] = mapped_column(Integer, nullable=True)
    line_count: Mapped[int] = mapped_column(Integer, server_default="1")
    failed_lines: Mapped[int] = mapped_column(Integer, server_default="0")
    #: An evaluation's example: its evaluation (its line number in `batch_line`, its gold in `meta`).
    evaluation_id: Mapped[str | None] = mapped_column(ForeignKey("evaluations.id"), nullable=True)
    #: A fill-mask job's token ids as the API's check made them (`contract.tokens.pack_token_ids`), so that the
    #: worker does not tokenize again; cleared when the job finishes.
    token_ids: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)



class File(Base):
    """An uploaded or written file (a batch's input, output or errors), its bytes in `file_parts`."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_api_key_created", "api_key_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: When it was deleted: its parts are gone, and no route shows it; the row stays, as batches and evaluations
    #: name their input file.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class FilePart(Base):
    """A file's bytes in order, a part (up to 1 MiB) per row, so that no process holds a whole file."""

    __tablename__ = "file_parts"

    file_id: Mapped[str] = mapped_column(ForeignKey("files.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


VALIDATING, IN_PROGRESS, FINALIZING, COMPLETED = "validating", "in_progress", "finalizing", "completed"
BATCH_FAILED, CANCELLING, CANCELLED = "failed", "cancelling", "cancelled"


class Batch(Base):
    """A batch (the OpenAI Batch API's shape): its lines run as jobs of the batch."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_api_key_created", "api_key_id", "created_at"),
                      Index("ix_batches_status", "status"),
                      # Whether a batch names a file (retention deletes the rows of files nothing names).
                      Index("ix_batches_input_file", "input_file_id"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    input_file_id: Mapped[str] = mapped_column(ForeignKey("files.id"))
    endpoint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    #: The output and error files: written as the lines end (`store/batch_output.py`), shown once the batch has.
    output_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: The last line whose output (or error) line those files hold: every line up to it has ended.
    output_through: Mapped[int] = mapped_column(Integer, server_default="0")
    #: Of the lines up to `output_through`: those that succeeded (the output file's) and those that failed or were
    #: canceled (the error file's). `store.batches.request_counts` counts only the lines ended beyond it.
    written_completed: Mapped[int] = mapped_column(Integer, server_default="0")
    written_failed: Mapped[int] = mapped_column(Integer, server_default="0")
    #: Lines of the input file; what failed validation (`{"object": "list", "data": [...]}`), if it did.
    total: Mapped[int] = mapped_column(Integer)
    errors: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    webhook: Mapped[str | None] = mapped_column(Text, nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    in_progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finalizing_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancelling_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: While validating: when its check last made progress (beat fails a check that stopped: `check_lease_s`).
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


EVAL_QUEUED, EVAL_SUCCEEDED, EVAL_FAILED, EVAL_CANCELED = "queued", "succeeded", "failed", "canceled"


class Evaluation(Base):
    """An evaluation: its examples run as jobs of the evaluation; its metrics are computed from them once none is
    left in flight. Stored statuses: queued (in flight; shown `running` once an example has started), succeeded,
    failed (its file did not validate, or every example failed), canceled."""

    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_api_key_created", "api_key_id", "created_at"),
                      Index("ix_evaluations_status", "status"),
                      Index("ix_evaluations_input_file", "input_file_id"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    task: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(255))
    input_file_id: Mapped[str] = mapped_column(ForeignKey("files.id"))
    status: Mapped[str] = mapped_column(String(16))
    #: Examples evaluated (lines of the file, or the sample of them).
    total: Mapped[int] = mapped_column(Integer)
    #: The metrics asked for, and the config with its defaults.
    metric_names: Mapped[list[str]] = mapped_column(JSONType)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    output_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: Why it failed: `{"code", "message", "lines": [...]}`.
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    #: Once it has ended, its examples by status (`{status: count}`), which no longer change: its answers (a list
    #: page of them too) read this rather than counting every example again.
    final_counts: Mapped[dict[str, int] | None] = mapped_column(JSONType, nullable=True)
    webhook: Mapped[str | None] = mapped_column(Text, nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: When its metrics and output file were written (its end), None before.
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


EVENT_STARTED, EVENT_COMPLETED, EVENT_BATCH_COMPLETED = "job.started", "job.completed", "batch.completed"
EVENT_EVALUATION_COMPLETED = "evaluation.completed"
#: `webhook_events_filter` names → event types.
EVENT_FOR_FILTER = {"start": EVENT_STARTED, "completed": EVENT_COMPLETED}
PENDING, DELIVERED, GONE = "pending", "delivered", "gone"


class WebhookEvent(Base):
    """One event to deliver to one job's webhook (the outbox): written in the transaction that changes the
    job's status, so that no event is lost; its id is the `webhook-id` of every attempt."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_due", "status", "next_attempt_at"),
        # A batch's and an evaluation's events, which retention deletes with them; only those rows (a job's event
        # writes no entry).
        Index("ix_webhook_events_batch", "batch_id", sqlite_where=OF_BATCH, postgresql_where=OF_BATCH),
        Index("ix_webhook_events_evaluation", "evaluation_id", sqlite_where=OF_EVALUATION,
              postgresql_where=OF_EVALUATION),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: The job the event is about, or (`batch.completed`) the batch, or (`evaluation.completed`) the evaluation.
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), index=True, nullable=True)
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"), nullable=True)
    evaluation_id: Mapped[str | None] = mapped_column(ForeignKey("evaluations.id"), nullable=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    #: The exact body sent on every attempt.
    payload: Mapped[str] = mapped_column(Text)
    #: pending → delivered | gone (410) | failed (retries exhausted)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: An attempt under way holds the event until then; after it, the event is due again.
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: When the event's id was last put on the webhooks queue.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WebhookAttempt(Base):
    """The delivery log: one row per attempt."""

    __tablename__ = "webhook_attempts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_ms: Mapped[float] = mapped_column()
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
