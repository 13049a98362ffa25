"""`distilq submit TASK TEXT… [--top-k K] [--wait]` and `distilq jobs get|list|cancel|wait`: jobs through the Python
client (`distilq/rest.py`). On a terminal a job's outputs and a list of jobs print as tables; otherwise as JSON."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from distilq.rest import CommandError, client, show

if TYPE_CHECKING:
    from distilq_client import Job

#: Longest a request is held by the service (`Prefer: wait`); past it `--wait` polls with a progress spinner.
HOLD_S = 60


def _show_job(job: Job) -> None:
    """A finished job's outputs as rows (fill-mask: input, token, score, sequence; QA: answer, score, start, end);
    else its status."""
    rows: list[list[Any]] = []
    columns: list[str]
    if job.output is not None and job.task == "fill-mask":
        columns = ["input", "token", "score", "sequence"]
        for index, predictions in enumerate(job.output):
            for mask in predictions if predictions and isinstance(predictions[0], list) else [predictions]:
                rows += [[index, p["token_str"], p["score"], p["sequence"]] for p in mask]
    elif job.output is not None:
        columns = ["pair", "answer", "score", "start", "end"]
        for index, answers in enumerate(job.output):
            rows += [[index, a["answer"], a["score"], a["start"], a["end"]]
                     for a in (answers if isinstance(answers, list) else [answers])]
    else:
        columns = ["id", "task", "status", "error"]
        rows = [[job.id, job.task, job.status, (job.error or {}).get("message")]]
    show(job.raw, columns, rows, title=f"job {job.id} · {job.task} · {job.status}")


def _wait(job: Job, timeout: float) -> Job:
    """The job once it has ended, with a spinner on stderr while it runs."""
    from rich.console import Console

    if job.ended:
        return job
    with Console(stderr=True).status(f"job {job.id}: {job.status}"):
        return client().wait(job.id, timeout)


def cmd_submit(args: argparse.Namespace) -> int:
    api = client()
    hold = min(HOLD_S, int(args.timeout)) if args.wait else None
    if args.task == "fill-mask":
        if not args.texts:
            raise CommandError("fill-mask takes one or more TEXTs, each with a [MASK]")
        job = api.fill_mask(args.texts, top_k=args.top_k, wait_s=hold)
    else:
        if args.texts or not args.question or len(args.question) != len(args.context or []):
            raise CommandError("question-answering takes --question Q --context C pairs (as many of each)")
        job = api.question_answering(args.question, args.context, top_k=args.top_k, wait_s=hold)
    if args.wait:
        job = _wait(job, args.timeout)
    _show_job(job)
    return 0 if job.status != "failed" else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    api = client()
    if args.jobs_command == "list":
        jobs = []
        for job in api.list(status=args.status, task=args.task, page_size=min(args.limit, 100)):
            jobs.append(job)
            if len(jobs) == args.limit:
                break
        show([job.raw for job in jobs], ["id", "task", "status", "created", "queue ms", "inference ms"],
             [[job.id, job.task, job.status, job.created_at, job.metrics.get("queue_ms"),
               job.metrics.get("inference_ms")] for job in jobs], title=f"{len(jobs)} jobs, newest first")
        return 0
    if args.jobs_command == "get":
        job = api.get(args.job_id)
    elif args.jobs_command == "cancel":
        job = api.cancel(args.job_id)
    else:
        started = time.monotonic()
        job = _wait(api.get(args.job_id), args.timeout - (time.monotonic() - started))
    _show_job(job)
    return 0


def add_parsers(sub: Any) -> None:
    submit = sub.add_parser("submit", help="submit a job (DISTILQ_URL, DISTILQ_API_KEY); JSON, or a table on a "
                                           "terminal")
    submit.add_argument("task", choices=("fill-mask", "question-answering"))
    submit.add_argument("texts", nargs="*", metavar="TEXT", help="fill-mask: the texts, each with a [MASK]")
    submit.add_argument("--question", action="append", help="question-answering: a question (repeat, paired with "
                                                             "--context)")
    submit.add_argument("--context", action="append", help="question-answering: its context")
    submit.add_argument("--top-k", dest="top_k", type=int)
    submit.add_argument("--wait", action="store_true", help="wait for the job to end and show its outputs")
    submit.add_argument("--timeout", type=float, default=300, help="seconds --wait waits at most (300)")
    submit.set_defaults(func=cmd_submit)
    jobs = sub.add_parser("jobs", help="your jobs: get|list|cancel|wait (DISTILQ_URL, DISTILQ_API_KEY)")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    for name, text in (("get", "one job"), ("cancel", "cancel a job"), ("wait", "wait for a job to end")):
        command = jobs_sub.add_parser(name, help=text)
        command.add_argument("job_id")
        command.add_argument("--timeout", type=float, default=300, help="wait: seconds at most (300)")
        command.set_defaults(func=cmd_jobs)
    listing = jobs_sub.add_parser("list", help="your jobs, newest first")
    listing.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "canceled"))
    listing.add_argument("--task", choices=("fill-mask", "question-answering"))
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=cmd_jobs)
