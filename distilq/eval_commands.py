"""`distilq eval TASK FILE [--wait]` and `distilq eval get|list|cancel`: evaluations over the REST API
(`distilq/rest.py`). `--wait` shows the examples' progress (rich) and then the metrics as a table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from distilq.rest import Api, follow, print_json

ENDED = ("succeeded", "failed", "canceled")


def _ended(evaluation: dict[str, Any]) -> bool:
    # A canceled evaluation ends once its running examples have finished and its metrics are written.
    return evaluation["status"] in ENDED and evaluation["completed_at"] is not None


def _progress(evaluation: dict[str, Any]) -> tuple[int, int]:
    return evaluation["result_counts"]["done"], evaluation["result_counts"]["total"]


def _metrics_table(evaluation: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{evaluation['task']} · {evaluation['model']} · {evaluation['result_counts']['total']} "
                        "examples")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in (evaluation["metrics"] or {}).items():
        table.add_row(name, "—" if value is None else f"{value:.4f}")
    Console(stderr=True).print(table)


def cmd_run(args: argparse.Namespace) -> int:
    api = Api()
    uploaded = api.upload(Path(args.file), "evaluation")
    request: dict[str, Any] = {"task": args.task, "input_file_id": uploaded["id"], "config": {}}
    if args.metrics:
        request["metrics"] = args.metrics.split(",")
    for name in ("top_k", "max_samples", "seed"):
        if getattr(args, name) is not None:
            request["config"][name] = getattr(args, name)
    evaluation = api.call("POST", "/v1/evaluations", request)
    print(f"distilq: evaluation {evaluation['id']}: {evaluation['status']} "
          f"({evaluation['result_counts']['total']} examples)", file=sys.stderr)
    if evaluation["status"] == "failed":
        for line in (evaluation["error"] or {}).get("lines", []):
            print(f"distilq: {line['message']}", file=sys.stderr)
        print_json(evaluation)
        return 1
    if args.wait:
        evaluation = follow(api, f"/v1/evaluations/{evaluation['id']}", evaluation, _ended, _progress)
        _metrics_table(evaluation)
    print_json(evaluation)
    return 0 if evaluation["status"] != "failed" else 1


def cmd_get(args: argparse.Namespace) -> int:
    print_json(Api().call("GET", f"/v1/evaluations/{args.evaluation_id}"))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print_json(Api().call("GET", f"/v1/evaluations?limit={args.limit}")["data"])
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    print_json(Api().call("POST", f"/v1/evaluations/{args.evaluation_id}/cancel"))
    return 0


def add_parser(sub: Any) -> None:
    evaluate = sub.add_parser("eval", help="evaluations: how good the model is on your labelled file (over the REST "
                                           "API; DISTILQ_URL, DISTILQ_API_KEY)")
    evaluate.add_argument("task", choices=("fill-mask", "question-answering", "get", "list", "cancel"),
                          help="the task to evaluate (with FILE), or get|list|cancel")
    evaluate.add_argument("file", nargs="?", help="JSONL examples (with TASK), or the evaluation id (get, cancel)")
    evaluate.add_argument("--wait", action="store_true", help="show progress, then the metrics as a table")
    evaluate.add_argument("--metrics", help="comma-separated metrics to compute (default: all of the task's)")
    evaluate.add_argument("--top-k", dest="top_k", type=int, help="fill-mask: predictions ranked per example (5)")
    evaluate.add_argument("--max-samples", dest="max_samples", type=int, help="evaluate a seeded sample this large")
    evaluate.add_argument("--seed", type=int, help="seeds the sample and the MLM loss's masking (0)")
    evaluate.add_argument("--limit", type=int, default=20, help="list: how many")
    evaluate.set_defaults(func=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    """`eval TASK FILE` runs one; `eval get ID`, `eval list`, `eval cancel ID` read or cancel."""
    if args.task == "list":
        return cmd_list(args)
    if args.file is None:
        raise SystemExit(f"distilq eval {args.task}: give {'the FILE' if '-' in args.task else 'the evaluation id'}")
    if args.task in ("get", "cancel"):
        args.evaluation_id = args.file
        return cmd_get(args) if args.task == "get" else cmd_cancel(args)
    return cmd_run(args)
