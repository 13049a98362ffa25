"""The `distilq` command: up, api, worker, beat, migrate, keys; and `submit`, `jobs`, `batch`, `eval` and `files`,
clients of the REST API through the Python client (`distilq/job_commands.py`, `batch_commands.py`,
`eval_commands.py`, `file_commands.py`).
The server's settings are read (and validated) once, here, and passed down."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from core.logs import configure_logging
from core.settings import Settings, get_settings
from distilq import batch_commands, eval_commands, file_commands, job_commands, rest

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
#: A worker's exit status when a model it should serve does not load.
EXIT_MODEL_UNAVAILABLE = 3


def cmd_migrate(_args: argparse.Namespace) -> int:
    from migrations import run_migrations

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    run_migrations(settings.resolved_database_url)
    return 0


def _key_sessions(args: argparse.Namespace) -> sessionmaker[Session]:
    """Sessions on the (migrated) database the keys live in. Says on stderr which database that is — a relative
    DISTILQ_HOME names another one in every directory — and warns when there was none yet."""
    from models.db import make_engine, make_session_factory

    settings = get_settings()
    url = settings.resolved_database_url
    fresh = settings.default_database_file is not None and not settings.default_database_file.exists()
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the key alone on stdout, no migration chatter
    cmd_migrate(args)
    print(f"distilq: keys of the database {url}", file=sys.stderr)
    if fresh:
        print(f"distilq: warning: there was no database at {url}; a new one was made. If `distilq up` runs from "
              "another directory, set DISTILQ_HOME to an absolute path, the same for both.", file=sys.stderr)
    return make_session_factory(make_engine(url))


def cmd_keys_create(args: argparse.Namespace) -> int:
    from models.db import transaction
    from store.keys import create_key

    with transaction(_key_sessions(args)) as session:
        key = create_key(session, args.name)
    print(key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from core.clock import isoformat
    from store.keys import list_keys

    with _key_sessions(args)() as session:
        keys = list_keys(session)
    print(f"{'id':36}  {'name':20}  {'prefix':10}  {'created':24}  {'last used':24}  revoked")
    for key in keys:
        print(f"{key.id:36}  {key.name[:20]:20}  {key.prefix:10}  {isoformat(key.created_at) or '-':24}  "
              f"{isoformat(key.last_used_at) or '-':24}  {isoformat(key.revoked_at) or '-'}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from models.db import transaction
    from store.keys import revoke_key

    with transaction(_key_sessions(args)) as session:
        found = revoke_key(session, args.key)
    if found != 1:
        print(f"{'no active key' if found == 0 else 'several keys'} match {args.key}: nothing revoked",
              file=sys.stderr)
        return 1
    print(f"revoked {args.key}", file=sys.stderr)
    import redis

    from api.key_cache import ENTRY_TTL_S
    from core.queue import KEYS_REVOKED_CHANNEL

    try:  # API processes drop the keys they hold in memory
        redis.Redis.from_url(get_settings().redis_url, socket_timeout=5, socket_connect_timeout=2).publish(
            KEYS_REVOKED_CHANNEL, "1")
    except redis.RedisError as error:
        print(f"distilq: warning: could not tell the API processes ({error.__class__.__name__}); those that hold "
              f"the key in memory accept it for at most {ENTRY_TTL_S:.0f} s more", file=sys.stderr)
    return 0


#: Requests an API process on gevent serves at once (gunicorn's default): a greenlet is cheap, and what one key
#: may hold is bounded by DISTILQ_MAX_WAITING_PER_KEY.
GEVENT_CONNECTIONS = 1000


def _server_options(server: str, threads: int) -> list[str]:
    """gunicorn's worker class and its concurrency for `DISTILQ_API_SERVER`."""
    if server == "gevent":
        return ["--worker-class", "gevent", "--worker-connections", str(GEVENT_CONNECTIONS)]
    return ["--worker-class", "gthread", "--threads", str(threads)]


def cmd_api(args: argparse.Namespace) -> int:
    """gunicorn on threads or on gevent (`DISTILQ_API_SERVER`): `Prefer: wait` holds a thread or a greenlet, not a
    process."""
    settings = get_settings()
    workers = args.workers or settings.default_api_processes()
    try:
        settings.check_api_processes(workers)  # gunicorn's start hook checks it too, for direct starts
    except ValueError as error:
        raise SystemExit(f"distilq: refusing to start: {error}") from None
    # Metrics of all gunicorn processes are merged from files here; a fresh directory per start.
    metrics_dir = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or settings.home / f"prometheus-api-{args.port}")
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    argv = [
        sys.executable, "-m", "gunicorn", "api.wsgi:app", "--config", "python:api.gunicorn_conf",
        "--bind", f"{args.host}:{args.port}",
        *_server_options(settings.resolved_api_server, args.threads), "--workers", str(workers),
        "--timeout", "90", "--graceful-timeout", "30", "--access-logfile", "-",
    ]
    os.execv(sys.executable, argv)
    return 0  # not reached


def cmd_worker(args: argparse.Namespace) -> int:
    from core.queue import INFERENCE_QUEUES
    from core.tasks import ModelUnavailable
    from worker.app import create_worker_app

    queues = [q.strip() for q in (args.queues or ",".join(INFERENCE_QUEUES)).split(",") if q.strip()]
    served_tasks = [q for q in queues if q in INFERENCE_QUEUES]
    app, context = create_worker_app(get_settings(), served_tasks, args.metrics_port)
    try:
        context.load_models()
    except ModelUnavailable as error:
        logging.getLogger("distilq.worker").critical("%s; this worker takes no jobs and stops", error)
        return EXIT_MODEL_UNAVAILABLE
    name = "+".join(queues)
    # Inference runs in the worker's own process (one model copy, all cores to torch); a webhook sender only
    # waits on receivers, so it sends from many threads.
    pool = ["--pool=solo"] if served_tasks else ["--pool=threads", f"--concurrency={args.concurrency}"]
    # Celery logs two lines per message ("received", "succeeded"); the batcher logs each job and batch itself,
    # and most messages of a busy worker are redundant wake-ups. Failures are still logged (at ERROR).
    for chatty in ("celery.worker.strategy", "celery.app.trace"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    app.worker_main([
        "worker", *pool, "--queues", ",".join(queues), "--hostname", f"distilq-{name}-{os.getpid()}@%h",
        "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ])
    return 0


def cmd_beat(_args: argparse.Namespace) -> int:
    import redis

    from core.clock import utcnow
    from core.heap import freeze_heap
    from core.presence import ready_workers
    from core.queue import make_celery
    from models.db import make_engine, make_session_factory
    from worker.events import JobEvents
    from worker.sweeper import Sweeper, run_forever

    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    celery = make_celery(settings.redis_url)
    sweeper = Sweeper(make_session_factory(make_engine(settings.resolved_database_url)), JobEvents(client, celery),
                      settings, utcnow, lambda: {str(worker.get("name")) for worker in ready_workers(client)})
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    logging.getLogger(__name__).info("beat sweeping every %.1f s", settings.sweep_interval_s)
    freeze_heap()  # a batch's output lines, written as its lines end, would bring on full collections of it
    run_forever(sweeper, client, stop)
    return 0


def up_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """What `distilq up` sets for its children beyond `environ`: one database for all; webhooks to this machine's
    own receivers; and no check processes beside the API (`api/check_pool.py`), since on a laptop the worker runs
    its forward passes on the same cores — unless the environment says otherwise."""
    env = {"DISTILQ_DATABASE_URL": settings.resolved_database_url}
    for name, value in (("DISTILQ_WEBHOOK_ALLOW_PRIVATE", "true"), ("DISTILQ_CHECK_PROCESSES", "0")):
        if name not in environ:
            env[name] = value
    return env


def cmd_up(args: argparse.Namespace) -> int:
    """The whole stack on this machine. A child that dies is started again (with a growing pause while it keeps
    dying); Ctrl-C or SIGTERM stops them all."""
    from distilq.stack import LocalStack

    settings = get_settings()
    stack = LocalStack(settings.home, up_environment(settings, os.environ))
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        stack.start_redis()
        stack.run("migrate")
        stack.start("worker", "worker")
        stack.start("webhooks", "worker", "--queues", "webhooks")
        stack.start("beat", "beat")
        try:
            url = stack.start_api(args.host, args.port)
            stack.wait_for_workers()
        except (RuntimeError, TimeoutError) as error:  # the child said why in its own log lines, above
            print(f"distilq: could not start: {error}", file=sys.stderr, flush=True)
            return 1
        print(f"distilq is up on {url}", flush=True)
        stack.supervise(stopping, lambda news: print(f"distilq: {news}", file=sys.stderr, flush=True))
        return 0
    finally:
        stack.stop_all()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distilq", description="Asynchronous DistilBERT inference service.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="the whole stack on this machine (SQLite and an embedded Redis by default)")
    up.add_argument("--host", default=DEFAULT_HOST)
    up.add_argument("--port", type=int, default=DEFAULT_PORT)
    up.set_defaults(func=cmd_up)

    api = sub.add_parser("api", help="the HTTP API on gunicorn")
    api.add_argument("--host", default=DEFAULT_HOST)
    api.add_argument("--port", type=int, default=DEFAULT_PORT)
    api.add_argument("--workers", type=int, default=0, help="processes (default 2; 1 on SQLite in production)")
    api.add_argument("--threads", type=int, default=32,
                     help="threads per process, on threads (a process on gevent takes up to 1,000 requests)")
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="a Celery worker (inference queues by default)")
    worker.add_argument("--queues", default=None,
                        help="comma-separated: fill-mask, question-answering (default both), or webhooks")
    worker.add_argument("--concurrency", type=int, default=16, help="sending threads of a webhooks worker")
    worker.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus metrics here once ready (default 9101 for inference, 9102 for "
                             "webhooks; 0: off)")
    worker.set_defaults(func=cmd_worker)

    beat = sub.add_parser("beat", help="periodic maintenance: lost messages, dead workers, expired keys")
    beat.set_defaults(func=cmd_beat)

    migrate = sub.add_parser("migrate", help="upgrade the database schema to the latest revision")
    migrate.set_defaults(func=cmd_migrate)

    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="make a key and print it (shown once)")
    create.add_argument("--name", required=True)
    create.set_defaults(func=cmd_keys_create)
    listing = keys_sub.add_parser("list", help="every key: name, prefix, created, last used, revoked")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key named by its id, the key, or its beginning")
    revoke.add_argument("key")
    revoke.set_defaults(func=cmd_keys_revoke)

    job_commands.add_parsers(sub)
    batch_commands.add_parser(sub)
    eval_commands.add_parser(sub)
    file_commands.add_parser(sub)
    return parser


#: The clients of the REST API: they read DISTILQ_URL and DISTILQ_API_KEY, not the server's settings, and say an
#: error answer on stderr (`rest.run`).
REST_COMMANDS = ("submit", "jobs", "batch", "eval", "files")


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command in REST_COMMANDS:
        return rest.run(args.func, args)
    try:
        get_settings()  # validated once, production rules included, before anything starts
    except ValidationError as error:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())
        raise SystemExit(f"distilq: refusing to start: {problems}") from None
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
