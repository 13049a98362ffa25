"""`distilq files list|download|delete`: the key's files on the server — uploads, and batches' and evaluations'
outputs — through the Python client (`distilq/rest.py`). A downloaded output, or an input whose batch has run, can go
before retention takes it (README, "Retention")."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from contract.responses import FILE_PURPOSES
from distilq.rest import check_writable, client, download, show


def cmd_list(args: argparse.Namespace) -> int:
    found = list(client().list_files(purpose=args.purpose))
    show([file.raw for file in found], ["id", "filename", "purpose", "bytes", "created"],
         [(file.id, file.filename, file.purpose, file.bytes, file.raw["created_at"]) for file in found])
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    api = client()
    for file_id in args.file_ids:
        api.delete_file(file_id)
        print(f"distilq: deleted {file_id}", file=sys.stderr)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    api = client()
    if args.path in (None, "-"):  # to stdout, for a pipe (jq, head)
        for chunk in api.content(args.file_id):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return 0
    check_writable(args.path)
    download(api, args.file_id, args.path)
    return 0


def add_parser(sub: Any) -> None:
    files = sub.add_parser("files", help="your files on the server: uploads and outputs (over the REST API; "
                                         "DISTILQ_URL, DISTILQ_API_KEY)")
    files_sub = files.add_subparsers(dest="files_command", required=True)
    listing = files_sub.add_parser("list", help="your files, newest first")
    listing.add_argument("--purpose", choices=FILE_PURPOSES)
    listing.set_defaults(func=cmd_list)
    download = files_sub.add_parser("download", help="a file's content: an upload, or a batch's or an evaluation's "
                                                     "output or error file")
    download.add_argument("file_id", metavar="FILE_ID")
    download.add_argument("path", nargs="?", metavar="PATH", help="where to write it (default, or -: stdout)")
    download.set_defaults(func=cmd_download)
    delete = files_sub.add_parser("delete", help="delete files: their bytes go at once")
    delete.add_argument("file_ids", nargs="+", metavar="FILE_ID")
    delete.set_defaults(func=cmd_delete)
