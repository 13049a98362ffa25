"""`distilq batch submit|get|list|cancel`: batches through the Python client (`distilq/rest.py`). `--wait` shows
the batch's progress (rich) and `--output` writes its output file as it downloads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distilq.rest import client, follow, print_json

if TYPE_CHECKING:
    from distilq_client import Batch, Client


def _wait(api: Client, batch: Batch) -> Batch:
    """Polls the batch until it ends, with a progress bar on stderr."""
    return follow(lambda: api.get_batch(batch.id), batch, lambda b: b.ended,
                  lambda b: (b.request_counts["completed"] + b.request_counts["failed"], b.request_counts["total"]))


def cmd_submit(args: argparse.Namespace) -> int:
    api = client()
    uploaded = api.upload(Path(args.file), "batch")
    batch = api.create_batch(uploaded.id, endpoint=args.endpoint)
    print(f"distilq: batch {batch.id}: {batch.status} ({batch.request_counts['total']} lines)", file=sys.stderr)
    if batch.status == "failed":
        print_json(batch.raw)
        return 1
    if args.wait or args.output:
        batch = _wait(api, batch)
        if args.output and batch.output_file_id:
            size = api.download(batch.output_file_id, Path(args.output))
            print(f"distilq: wrote {args.output} ({size} bytes)", file=sys.stderr)
    print_json(batch.raw)
    return 0 if batch.status != "failed" else 1


def cmd_get(args: argparse.Namespace) -> int:
    print_json(client().get_batch(args.batch_id).raw)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print_json([batch.raw for batch in client().list_batches(args.limit)])
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    print_json(client().cancel_batch(args.batch_id).raw)
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
