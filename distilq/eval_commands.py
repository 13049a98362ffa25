"""`distilq eval TASK FILE [--wait] [--output OUT [--delete-files]]` and `distilq eval get|list|cancel|wait`:
evaluations through the Python client (`distilq/rest.py`). `--wait` shows the examples' progress (rich) and then the
metrics as a table; `--output` writes the per-example output file, and `--delete-files` then leaves only the
evaluation's record on the server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distilq.rest import (
    CommandError,
    check_writable,
    client,
    delete_on_server,
    download,
    follow,
    print_json,
    resumable,
)

if TYPE_CHECKING:
    from distilq_client import Client, Evaluation


def _metrics_table(evaluation: Evaluation) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("metric", "value", title=f"{evaluation.task} · {evaluation.raw['model']} · "
                                           f"{evaluation.result_counts['total']} examples")
    for name, value in (evaluation.metrics or {}).items():
        table.add_row(name, "—" if value is None else f"{value:.4f}")
    Console(stderr=True).print(table)


def _check_outputs(args: argparse.Namespace) -> None:
    """`--output` and `--delete-files` checked before anything is sent."""
    if args.delete_files and not args.output:
        raise CommandError("--delete-files needs --output: the evaluation's output file is deleted once written there")
    check_writable(args.output)


def cmd_run(args: argparse.Namespace) -> int:
    _check_outputs(args)
    api = client()
    uploaded = api.upload(Path(args.file), "evaluation")
    config = {name: getattr(args, name) for name in ("top_k", "max_samples", "seed") if getattr(args, name) is not None}
    return _finish(api, api.create_evaluation(args.task, uploaded.id, config=config,
                                              metrics=args.metrics.split(",") if args.metrics else None), args)


def cmd_wait(args: argparse.Namespace) -> int:
    _check_outputs(args)
    api = client()
    args.wait = True
    return _finish(api, api.get_evaluation(args.file), args)


def _finish(api: Client, evaluation: Evaluation, args: argparse.Namespace) -> int:
    """Says the evaluation, waits for it (`--wait`, `--output`) and shows its metrics, writes its output file as
    asked, deletes its files on the server under `--delete-files`, prints it; the exit status. Interrupted (Ctrl-C),
    it says how to pick the evaluation up again (`resumable`)."""
    with resumable(f"distilq eval wait {evaluation.id}"):
        print(f"distilq: evaluation {evaluation.id}: {evaluation.status} "
              f"({evaluation.result_counts['total']} examples)", file=sys.stderr)
        deleted = [evaluation.raw["input_file_id"]]
        bad_lines = (evaluation.error or {}).get("lines", [])
        if bad_lines:  # its file failed the check: nothing ran
            for line in bad_lines:
                print(f"distilq: {line['message']}", file=sys.stderr)
        elif args.wait or args.output:
            evaluation = follow(lambda: api.get_evaluation(evaluation.id), evaluation, lambda e: e.ended,
                                lambda e: (e.result_counts["done"], e.result_counts["total"]))
            _metrics_table(evaluation)
            if args.output and evaluation.output_file_id:
                download(api, evaluation.output_file_id, args.output)
                deleted.append(evaluation.output_file_id)
        if args.delete_files:
            delete_on_server(api, deleted)
    print_json(evaluation.raw)
    return 0 if evaluation.status != "failed" else 1


def add_parser(sub: Any) -> None:
    evaluate = sub.add_parser("eval", help="evaluations: how good the model is on your labelled file (over the REST "
                                           "API; DISTILQ_URL, DISTILQ_API_KEY)")
    evaluate.add_argument("task", choices=("fill-mask", "question-answering", "get", "list", "cancel", "wait"),
                          help="the task to evaluate (with FILE), or get|list|cancel|wait (wait: for one to end, "
                               "then as --wait and --output)")
    evaluate.add_argument("file", nargs="?", help="JSONL examples (with TASK), or the evaluation id (get, cancel, "
                                                  "wait)")
    evaluate.add_argument("--wait", action="store_true", help="show progress, then the metrics as a table")
    evaluate.add_argument("--output", help="write the output file (a line per example: its prediction and scores) "
                                           "here once the evaluation ends (implies --wait)")
    evaluate.add_argument("--delete-files", action="store_true",
                          help="with --output: then delete the uploaded file and the output file on the server")
    evaluate.add_argument("--metrics", help="comma-separated metrics to compute (default: all of the task's)")
    evaluate.add_argument("--top-k", dest="top_k", type=int, help="fill-mask: predictions ranked per example (5)")
    evaluate.add_argument("--max-samples", dest="max_samples", type=int, help="evaluate a seeded sample this large")
    evaluate.add_argument("--seed", type=int, help="seeds the sample and the MLM loss's masking (0)")
    evaluate.add_argument("--limit", type=int, default=20, help="list: how many")
    evaluate.set_defaults(func=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    """`eval TASK FILE` runs one; `eval get ID`, `eval list`, `eval cancel ID` read or cancel; `eval wait ID` waits
    for one, as `--wait`."""
    if args.task == "list":
        print_json([evaluation.raw for evaluation in client().list_evaluations(args.limit)])
        return 0
    if args.file is None:
        raise SystemExit(f"distilq eval {args.task}: give {'the FILE' if '-' in args.task else 'the evaluation id'}")
    if args.task == "get":
        print_json(client().get_evaluation(args.file).raw)
        return 0
    if args.task == "cancel":
        print_json(client().cancel_evaluation(args.file).raw)
        return 0
    if args.task == "wait":
        return cmd_wait(args)
    return cmd_run(args)
