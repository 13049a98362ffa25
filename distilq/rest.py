"""What the client commands (`submit`, `jobs`, `batch`, `eval`) share: the Python client (`client/`,
`distilq_client`) made from `DISTILQ_URL` (default http://127.0.0.1:8000) and `DISTILQ_API_KEY`, JSON on stdout
for scripts or a table when stdout is a terminal, progress bars on stderr, and errors said on stderr (exit 1)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distilq_client import Client

DEFAULT_URL = "http://127.0.0.1:8000"
#: Seconds between two polls of something running.
POLL_S = 1.0


class CommandError(Exception):
    """What to tell the user on stderr; the command exits 1."""


def client() -> Client:
    from distilq_client import Client

    key = os.environ.get("DISTILQ_API_KEY")
    if not key:
        raise CommandError("set DISTILQ_API_KEY to your API key (`distilq keys create --name …` makes one)")
    return Client(os.environ.get("DISTILQ_URL", DEFAULT_URL), key)


def follow(read: Callable[[], Any], current: Any, ended: Callable[[Any], bool],
           progress_of: Callable[[Any], tuple[int, int]]) -> Any:
    """Polls `read()` every POLL_S until `ended`, with a progress bar on stderr (`progress_of`: done, total); the
    last answer."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        done, total = progress_of(current)
        bar = progress.add_task(current.status, total=total or None, completed=done)
        while not ended(current):
            time.sleep(POLL_S)
            current = read()
            done, total = progress_of(current)
            progress.update(bar, completed=done, description=current.status)
    return current


def check_writable(path: str | None) -> None:
    """An output path (`--output`, `--errors`), checked before anything is uploaded: a batch may run for an hour, and
    a path that cannot be written would otherwise fail only once it has ended."""
    if path is None:
        return
    target = Path(path)
    if not target.parent.is_dir():
        raise CommandError(f"cannot write {path}: no folder {target.parent}")
    if target.is_dir() or not os.access(target if target.exists() else target.parent, os.W_OK):
        raise CommandError(f"cannot write {path}")


@contextmanager
def resumable(command: str) -> Iterator[None]:
    """Around the following of a batch or an evaluation, which goes on running on the server: Ctrl-C says how to pick it
    up again (`command`) and exits 130 (or, where the interrupt fell inside code Python ran from a string, by SIGINT:
    CPython's -m does so whatever the program's exit — a shell shows 130 either way)."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"distilq: interrupted; `{command}` picks it up again (with --output and the like as you wish)",
              file=sys.stderr)
        raise SystemExit(130) from None


def download(api: Client, file_id: str, path: str) -> None:
    """A file written to `path` (`--output`, `--errors`), and said."""
    size = api.download(file_id, Path(path))
    print(f"distilq: wrote {path} ({size} bytes)", file=sys.stderr)


def delete_on_server(api: Client, file_ids: Sequence[str]) -> None:
    """`--delete-files`: deletes these files on the server (once what was asked is written here), and says which; one
    already gone is as asked (a command run again)."""
    from distilq_client import DistilqError

    for file_id in file_ids:
        try:
            api.delete_file(file_id)
        except DistilqError as error:
            if error.status != 404:
                raise
    print(f"distilq: deleted on the server: {' '.join(file_ids)}", file=sys.stderr)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def show(value: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """`value` as JSON on stdout for scripts; on a terminal, `rows` as a table of `columns` instead."""
    if not sys.stdout.isatty():
        print_json(value)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*("—" if cell is None else f"{cell:.4f}" if isinstance(cell, float) else str(cell)
                        for cell in row))
    Console().print(table)


def run(command: Callable[[Any], int], args: Any) -> int:
    """Runs a command; a CommandError or an error answer of the API is said on stderr, exit status 1."""
    from distilq_client import DistilqError

    try:
        return int(command(args))
    except (CommandError, DistilqError) as error:
        print(f"distilq: {error}", file=sys.stderr)
        return 1
