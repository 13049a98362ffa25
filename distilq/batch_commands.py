"""`distilq batch submit|get|list|cancel`: batches over the REST API (`distilq/rest.py`). `--wait` shows the batch's
progress (rich) and `--output` writes its output file as it downloads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from distilq.rest import Api, follow, print_json

ENDED = ("completed", "failed", "cancelled")


def _wait(api: Api, batch: dict[str, Any]) -> dict[str, Any]:
    """Polls the batch until it ends, with a progress bar on stderr."""
    counts = lambda b: (b["request_counts"]["completed"] + b["request_counts"]["failed"],  # noqa: E731
                        b["request_counts"]["total"])
    return follow(api, f"/v1/batches/{batch['id']}", batch, lambda b: b["status"] in ENDED, counts)


def cmd_submit(args: argparse.Namespace) -> int:
    api = Api()
    uploaded = api.upload(Path(args.file), "batch")
    request: dict[str, Any] = {"input_file_id": uploaded["id"]}
    if args.endpoint:
        request["endpoint"] = args.endpoint
    batch = api.call("POST", "/v1/batches", request)
    print(f"distilq: batch {batch['id']}: {batch['status']} ({batch['request_counts']['total']} lines)",
          file=sys.stderr)
    if batch["status"] == "failed":
        print_json(batch)
        return 1
    if args.wait or args.output:
        batch = _wait(api, batch)
        if args.output and batch.get("output_file_id"):
            size = api.download(f"/v1/files/{batch['output_file_id']}/content", Path(args.output))
            print(f"distilq: wrote {args.output} ({size} bytes)", file=sys.stderr)
    print_json(batch)
    return 0 if batch["status"] != "failed" else 1


def cmd_get(args: argparse.Namespace) -> int:
    print_json(Api().call("GET", f"/v1/batches/{args.batch_id}"))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print_json(Api().call("GET", f"/v1/batches?limit={args.limit}")["data"])
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    print_json(Api().call("POST", f"/v1/batches/{args.batch_id}/cancel"))
    return 0


def add_parser(sub: Any) -> None:
    batch = sub.add_parser("batch", help="batches: a file of requests in, an output file out (over the REST API; "
                                         "DISTILQ_URL, DISTILQ_API_KEY)")
    batch_sub = batch.add_subparsers(dest="batch_command", required=True)
    submit = batch_sub.add_parser("submit", help="upload a JSONL file of requests and start a batch")
    submit.add_argument("file")
    submit.add_argument("--endpoint", choices=("/v1/fill-mask", "/v1/question-answering"),
                        help="the route every line must use")
    submit.add_argument("--wait", action="store_true", help="show progress until the batch ends")
    submit.add_argument("--output", help="write the output file here once the batch ends (implies --wait)")
    submit.set_defaults(func=cmd_submit)
    get = batch_sub.add_parser("get", help="one batch")
    get.add_argument("batch_id")
    get.set_defaults(func=cmd_get)
    listing = batch_sub.add_parser("list", help="your batches, newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=cmd_list)
    cancel = batch_sub.add_parser("cancel", help="cancel a batch: what has not started does not run")
    cancel.add_argument("batch_id")
    cancel.set_defaults(func=cmd_cancel)
