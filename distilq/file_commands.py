"""`distilq files list|delete`: the key's files on the server — uploads, and batches' and evaluations' outputs — through
the Python client (`distilq/rest.py`). A downloaded output, or an input whose batch has run, can go before retention
takes it (README, "Retention")."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from contract.responses import FILE_PURPOSES
from distilq.rest import client, show


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


def add_parser(sub: Any) -> None:
    files = sub.add_parser("files", help="your files on the server: uploads and outputs (over the REST API; "
                                         "DISTILQ_URL, DISTILQ_API_KEY)")
    files_sub = files.add_subparsers(dest="files_command", required=True)
    listing = files_sub.add_parser("list", help="your files, newest first")
    listing.add_argument("--purpose", choices=FILE_PURPOSES)
    listing.set_defaults(func=cmd_list)
    delete = files_sub.add_parser("delete", help="delete files: their bytes go at once")
    delete.add_argument("file_ids", nargs="+", metavar="FILE_ID")
    delete.set_defaults(func=cmd_delete)
