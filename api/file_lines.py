"""Reading an uploaded file's lines for a batch or an evaluation: each line a JSON object, judged where it is read,
and what is wrong with a bad one (its number, the field) — a part of the file and one line in memory at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.validation import read_storable
from core.settings import Settings
from store import files

#: A failed batch or evaluation names at most this many bad lines.
MAX_ERRORS = 100
#: Lines whose model checks (token counts) run together, with one tokenizer call.
CHECK_CHUNK = 512


class BadLine(Exception):
    def __init__(self, number: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.error = {"code": "invalid_line", "message": f"line {number}: {message}", "line": number,
                      "param": param}


def bad_body(number: int, problems: list[dict[str, Any]], prefix: str | None = None) -> BadLine:
    """The first of a line's problems (`api.errors.detail`s), its field named from the line's top (`prefix`: the
    field the problems are inside of)."""
    where = ".".join(str(part) for part in [*([prefix] if prefix else []), *problems[0]["loc"]])
    return BadLine(number, f"{where}: {problems[0]['msg']}" if where else problems[0]["msg"], where or None)


def parse_line(number: int, raw: bytes) -> tuple[int, dict[str, Any], bool] | BadLine:
    """One line as (number, JSON object, whether its text shows nothing in it is unstorable:
    `api.validation.read_storable`), or what is wrong with it."""
    try:
        data, storable = read_storable(raw)
    except (ValueError, RecursionError) as error:
        return BadLine(number, f"not valid JSON ({error})")
    if not isinstance(data, dict):
        return BadLine(number, "a line must be a JSON object")
    return number, data, storable


def raw_lines(sessions: sessionmaker[Session], settings: Settings,
              file_id: str) -> Iterator[tuple[int, bytes] | BadLine]:
    """Every line of the file as (number, its bytes), blank lines skipped, unparsed; past `max_batch_lines` lines,
    at a line longer than `max_body_bytes`, or where the file's bytes end because it was deleted meanwhile, one
    BadLine and the end."""
    max_lines, count, number = settings.max_batch_lines, 0, 0
    try:
        for number, raw in enumerate(files.read_lines(sessions, file_id, settings.max_body_bytes), start=1):
            if not raw.strip():
                continue
            count += 1
            if count > max_lines:
                yield BadLine(number, f"a file holds at most {max_lines} lines")
                return
            yield number, raw
    except files.LineTooLong as error:
        yield BadLine(error.line, f"longer than {error.limit} bytes (DISTILQ_MAX_BODY_BYTES)")
    except files.DeletedWhileRead:
        yield BadLine(number + 1, "the file was deleted while it was checked")


def json_lines(sessions: sessionmaker[Session], settings: Settings,
               file_id: str) -> Iterator[tuple[int, dict[str, Any], bool] | BadLine]:
    """Every line of the file as `parse_line` reads it, blank lines skipped, or what is wrong with it (as
    `raw_lines`)."""
    for item in raw_lines(sessions, settings, file_id):
        yield item if isinstance(item, BadLine) else parse_line(*item)
