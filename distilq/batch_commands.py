"""`distilq batch submit|wait|get|list|cancel`: batches through the Python client (`distilq/rest.py`). `--wait` shows
the batch's progress (rich), `--output` and `--errors` write its output and error files as they download, and
`--delete-files` then leaves nothing of it on the server but the batch's record."""

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
    from distilq_client import Batch, Client


def _wait(api: Client, batch: Batch) -> Batch:
    """Polls the batch until it ends, with a progress bar on stderr."""
    return follow(lambda: api.get_batch(batch.id), batch, lambda b: b.ended,
                  lambda b: (b.request_counts["completed"] + b.request_counts["failed"], b.request_counts["total"]))


def _check_outputs(args: argparse.Namespace) -> None:
    """`--output`, `--errors` and `--delete-files` checked before anything is sent."""
    if args.delete_files and not args.output:
        raise CommandError("--delete-files needs --output: the batch's output file is deleted once written there")
    for path in (args.output, args.errors):
        check_writable(path)


def _finish(api: Client, batch: Batch, args: argparse.Namespace) -> int:
    """Says the batch, waits for it, writes its files as asked, deletes them on the server under `--delete-files`,
    prints it; the exit status. Interrupted (Ctrl-C), it says how to pick the batch up again (`resumable`)."""
    with resumable(f"distilq batch wait {batch.id}"):
        print(f"distilq: batch {batch.id}: {batch.status} ({batch.request_counts['total']} lines)", file=sys.stderr)
        written: list[str] = []
        if batch.status == "failed":  # its file failed the check: the bad lines, for the terminal (the JSON has them)
            for error in (batch.errors or {}).get("data", []):
                print(f"distilq: {error['message']}", file=sys.stderr)
        elif args.wait or args.output or args.errors:
            batch = _wait(api, batch)
            written = _download(api, batch, args)
        if args.delete_files:
            _delete_files(api, batch, batch.raw["input_file_id"], written)
    print_json(batch.raw)
    return 0 if batch.status != "failed" else 1


def cmd_submit(args: argparse.Namespace) -> int:
    _check_outputs(args)
    api = client()
    uploaded = api.upload(Path(args.file), "batch")
    return _finish(api, api.create_batch(uploaded.id, endpoint=args.endpoint), args)


def cmd_wait(args: argparse.Namespace) -> int:
    _check_outputs(args)
    api = client()
    return _finish(api, api.get_batch(args.batch_id), args)


def _not_succeeded(batch: Batch) -> int:
    """The batch's lines in its error file: failed, or cancelled before they ran."""
    return batch.request_counts["total"] - batch.request_counts["completed"]


def _download(api: Client, batch: Batch, args: argparse.Namespace) -> list[str]:
    """Writes the ended batch's output file to `--output` and its error file to `--errors`, as asked; the ids of
    the files written. Lines that did not succeed are said on stderr, with where they are."""
    written = []
    for file_id, path in ((batch.output_file_id, args.output), (batch.error_file_id, args.errors)):
        if file_id and path:
            download(api, file_id, path)
            written.append(file_id)
    unsucceeded = _not_succeeded(batch)
    if unsucceeded and batch.error_file_id:
        where = args.errors if args.errors else f"the error file {batch.error_file_id} (--errors PATH writes it)"
        print(f"distilq: {unsucceeded} line(s) failed or were cancelled: see {where}", file=sys.stderr)
    return written


def _delete_files(api: Client, batch: Batch, input_file_id: str, written: list[str]) -> None:
    """`--delete-files`: deletes on the server the uploaded input and every file of the batch that was written
    here — and its error file when no line failed (it is empty). An error file that holds lines and was not
    written here is kept (the message above names it)."""
    empty_errors = [batch.error_file_id] if batch.error_file_id and not _not_succeeded(batch) else []
    delete_on_server(api, list(dict.fromkeys([input_file_id, *written, *empty_errors])))


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
    _output_arguments(submit)
    submit.set_defaults(func=cmd_submit)
    wait = batch_sub.add_parser("wait", help="show a batch's progress until it ends, then write its files as asked "
                                             "(a submit interrupted, picked up again)")
    wait.add_argument("batch_id")
    _output_arguments(wait)
    wait.set_defaults(func=cmd_wait, wait=True)
    get = batch_sub.add_parser("get", help="one batch")
    get.add_argument("batch_id")
    get.set_defaults(func=cmd_get)
    listing = batch_sub.add_parser("list", help="your batches, newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=cmd_list)
    cancel = batch_sub.add_parser("cancel", help="cancel a batch: what has not started does not run")
    cancel.add_argument("batch_id")
    cancel.set_defaults(func=cmd_cancel)


def _output_arguments(parser: Any) -> None:
    parser.add_argument("--output", help="write the output file here once the batch ends (implies --wait)")
    parser.add_argument("--errors", help="write the error file (failed and cancelled lines) here once the batch ends "
                                         "(implies --wait)")
    parser.add_argument("--delete-files", action="store_true",
                        help="with --output: then delete the uploaded file and the batch's files on the server")
