"""The one typed settings object, read from `DISTILQ_*` environment variables."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.tasks import TASK_FILL_MASK

#: Hub ids of the two models the contract names.
DEFAULT_FILL_MASK_MODEL = "distilbert-base-cased"
DEFAULT_QA_MODEL = "distilbert-base-cased-distilled-squad"


#: How a worker's attention sees a pass's rows (`worker/engine/packed.py`): each row alone (`per-row`), FlashAttention
#: over the packed rows (`varlen`: no padding, no mask), or the rows padded to the longest with a mask (`padded`).
Attention = Literal["per-row", "varlen", "padded"]
ATTENTIONS: tuple[Attention, ...] = get_args(Attention)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISTILQ_", extra="ignore")

    #: `production` refuses unsafe settings at start (see `check_production`).
    env: Literal["development", "production"] = "development"
    debug: bool = False
    home: Path = Path(".distilq")
    database_url: str | None = None
    redis_url: str = "redis://localhost:6379/0"

    fill_mask_model: str = DEFAULT_FILL_MASK_MODEL
    qa_model: str = DEFAULT_QA_MODEL
    #: The name jobs, batches' lines and evaluations show as their `model` (and an evaluation may ask for). None:
    #: the model setting itself — a local directory's path, where the hub is out of reach.
    fill_mask_model_name: str | None = Field(default=None, min_length=1, max_length=255)
    qa_model_name: str | None = Field(default=None, min_length=1, max_length=255)
    device: str = "auto"
    #: `auto` is float16 on CUDA and float32 on the CPU.
    dtype: str = "auto"
    #: How attention sees a pass's rows: `auto` (`worker/engine/runtime.py`'s `Runtime.attention`), or an Attention.
    attention: Literal["auto"] | Attention = "auto"
    #: Threads of a worker's tensor operations. None: one per core the process may use on the CPU, one on CUDA.
    torch_threads: int | None = Field(default=None, ge=1, le=1024)
    #: Whether a worker runs its models in a process of their own (`worker/engine/device_process.py`), so that its
    #: database and Redis threads never hold the interpreter lock a forward pass waits for. None: on CUDA only.
    device_process: bool | None = None

    #: Inputs claimed into one batch, and rows per forward pass. None: the device's default
    #: (`worker/engine/runtime.py`: 32 on the CPU, 512 on CUDA).
    max_batch_size: int | None = Field(default=None, ge=1, le=4096)
    max_batch_wait_ms: int = Field(default=5, ge=0, le=10_000)
    #: While interactive jobs are about, a batch file's lines fill a pass only up to this many milliseconds of the
    #: engine's time (so that an interactive job waits for no long pass of lines); otherwise lines fill passes whole.
    #: 5: interactive p95 beside a batch 1.8–1.9× idle on the tiny checkpoint, where 20 gave 2.8–3.1× (BENCHMARKS.md).
    lines_pass_ms: int = Field(default=5, ge=1, le=60_000)
    #: A batch's consecutive lines of one task share a job row up to this many inputs (`store/batch_rows.py`): a
    #: row's store costs are paid once for them all, and a pass of lines takes whole rows. None: sized by what the
    #: workers' passes cost (`store.batch_rows.row_inputs`), at most 16.
    batch_row_inputs: int | None = Field(default=None, ge=1, le=4096)
    #: Bound on padded tokens in one forward pass (rows × longest row). None: the device's default (16,384 on the
    #: CPU, 131,072 on CUDA).
    max_batch_tokens: int | None = Field(default=None, ge=512)

    webhook_allow_private: bool = False
    webhook_retry_delays: str = "5,300,1800,7200,18000,36000"
    #: A receiver that has not answered within this many seconds has failed the attempt.
    webhook_timeout_s: float = Field(default=15.0, gt=0, le=60)

    lease_s: int = Field(default=120, ge=5)
    requeue_after_s: int = Field(default=60, ge=5)
    #: Attempts after which a job whose worker keeps dying is failed with `worker_lost`.
    max_attempts: int = Field(default=3, ge=1)
    #: How often `distilq beat` sweeps.
    sweep_interval_s: float = Field(default=5.0, gt=0)
    #: A batch whose file check has not moved for this long is failed by `beat`, its lines deleted: the API process
    #: checking it stopped. (A check moves every CHECK_CHUNK lines, many times a second.)
    check_lease_s: int = Field(default=60, ge=1)
    #: Processes beside each API process that judge a batch file's lines (`api/check_pool.py`); 0: the request's
    #: own thread. None: half the cores, at most 8, and none below 4 cores.
    check_processes: int | None = Field(default=None, ge=0, le=64)
    #: How an API process serves its requests: `threads` (gunicorn's gthread: a thread a request) or `gevent`
    #: (gunicorn's gevent worker: a greenlet a request, the standard library monkey-patched; a request held by
    #: `Prefer: wait` then costs no thread hand-over — BENCHMARKS.md, session 32). `auto`: gevent on PostgreSQL,
    #: threads on SQLite, where gevent is refused (`resolved_api_server`).
    api_server: Literal["auto", "threads", "gevent"] = "auto"

    #: Bounds on what one request may ask for (documented in the README).
    max_inputs_per_job: int = Field(default=256, ge=1)
    max_chars_per_input: int = Field(default=20_000, ge=1)
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    #: An uploaded file (POST /v1/files), and the lines of a batch's file.
    max_file_bytes: int = Field(default=200_000_000, ge=1024)
    max_batch_lines: int = Field(default=50_000, ge=1)
    #: `[MASK]` tokens in one fill-mask input: each is a top_k list of its own.
    max_masks_per_input: int = Field(default=32, ge=1)
    #: About how many bytes of output one job may ask for (fill-mask: masks × top_k × the sequence's length).
    max_output_bytes: int = Field(default=16_000_000, ge=10_000)
    #: `Prefer: wait` requests one API key may hold at once in each API process; more are answered at once (202).
    max_waiting_per_key: int = Field(default=8, ge=0)
    #: Idempotency keys are honoured for this long.
    idempotency_ttl_s: int = 86_400
    #: How long what a key made is kept: a job after it was created, once it has ended; a batch or an evaluation,
    #: with its lines and files, after it ended; an uploaded file after its upload. Then beat deletes it
    #: (`store/retention.py`). 0 keeps everything.
    retention_s: int = Field(default=30 * 86_400, ge=0)
    #: Requests per API key, in Flask-Limiter's (the `limits` library's) notation; counted in Redis.
    rate_limit: str = "600/minute"
    #: Jobs one API key may have queued or running at once.
    max_jobs_in_flight: int = Field(default=1000, ge=1)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value != "auto" and value != "cpu" and not value.startswith("cuda"):
            raise ValueError("DISTILQ_DEVICE must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError as error:
            raise ValueError(f"DISTILQ_RATE_LIMIT: {error}") from None
        return value

    @model_validator(mode="after")
    def _safe_in_production(self) -> Settings:
        """Outside development, refuse at construction what is only safe on a laptop, so that every process
        (the CLI, gunicorn started directly, a worker) refuses alike."""
        if self.env == "production":
            if not self.database_url:
                raise ValueError("DISTILQ_DATABASE_URL must be set in production (no SQLite file by default)")
            if self.debug:
                raise ValueError("DISTILQ_DEBUG must be off in production")
        if 0 < self.retention_s < self.idempotency_ttl_s:
            # A replay must find its job for as long as its Idempotency-Key is honoured: the default follows a
            # longer time to live (one set before retention existed must not stop the service); a setting is refused.
            if "retention_s" in self.model_fields_set:
                raise ValueError("DISTILQ_RETENTION_S must be 0 (keep everything) or at least "
                                 "DISTILQ_IDEMPOTENCY_TTL_S")
            self.retention_s = self.idempotency_ttl_s
        if self.api_server == "gevent" and self.on_sqlite:
            # sqlite3 waits for the database's lock in C: one greenlet waiting there holds every other of its
            # process, the lock's holder among them when it had yielded mid-transaction, until the wait times out.
            raise ValueError("DISTILQ_API_SERVER=gevent needs PostgreSQL (DISTILQ_DATABASE_URL): on SQLite a "
                             "write waiting for the database's lock holds the whole process")
        return self

    @property
    def resolved_api_server(self) -> Literal["threads", "gevent"]:
        """`api_server`, `auto` resolved: gevent on PostgreSQL, threads on SQLite."""
        if self.api_server != "auto":
            return self.api_server
        return "threads" if self.on_sqlite else "gevent"

    def default_api_processes(self) -> int:
        """API processes when none are asked for: two, as one is bound by its interpreter's lock near one core
        (BENCHMARKS.md); one on SQLite in production, which allows no more (`check_api_processes`)."""
        return 1 if self.env == "production" and self.on_sqlite else 2

    def check_api_processes(self, processes: int) -> None:
        """SQLite serves one API process in production; raises ValueError naming the setting otherwise. Called
        by gunicorn's start hook (`api/gunicorn_conf.py`), which knows the process count."""
        if self.env == "production" and self.on_sqlite and processes > 1:
            raise ValueError("SQLite cannot serve several API processes in production: use PostgreSQL "
                             "(DISTILQ_DATABASE_URL)")

    def model_id(self, task: str) -> str:
        """The hub id or local directory of the model serving `task`."""
        return self.fill_mask_model if task == TASK_FILL_MASK else self.qa_model

    def model_name(self, task: str) -> str:
        """The name clients see for the model serving `task`: its `*_MODEL_NAME`, else `model_id`."""
        name = self.fill_mask_model_name if task == TASK_FILL_MASK else self.qa_model_name
        return name or self.model_id(task)

    @staticmethod
    def model_variable(task: str) -> str:
        """The environment variable that names `task`'s model."""
        return "DISTILQ_FILL_MASK_MODEL" if task == TASK_FILL_MASK else "DISTILQ_QA_MODEL"

    def offline_hint(self, task: str) -> str:
        """What to do when `task`'s model cannot be fetched: nothing for a local directory."""
        if Path(self.model_id(task)).is_dir():
            return ""
        return (f"; if the model hub is unreachable, set {self.model_variable(task)} to a local directory holding "
                "the model")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.default_database_file}"

    @property
    def on_sqlite(self) -> bool:
        """Whether the database is SQLite (one API process in production, threads rather than gevent)."""
        return self.resolved_database_url.startswith("sqlite")

    @property
    def default_database_file(self) -> Path | None:
        """The SQLite file used when DISTILQ_DATABASE_URL is not set (None when it is)."""
        return None if self.database_url else (self.home / "distilq.db").resolve()

    @property
    def webhook_retry_delays_s(self) -> list[float]:
        return [float(part) for part in self.webhook_retry_delays.split(",") if part.strip()]


@functools.cache
def get_settings() -> Settings:
    """Read once per process; tests and `distilq up` set the environment before the first call."""
    return Settings()
