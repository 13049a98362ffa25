"""Files: their bytes stored in parts of at most PART_BYTES (`file_parts`), written and read a part at a time, so that
no process holds a whole file (up to `DISTILQ_MAX_FILE_BYTES`); in the database, so that every API process and
every worker host sees the same files."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.clock import unix_seconds
from models.tables import File, FilePart
from store.owned import newest_first

PART_BYTES = 1 << 20
#: What an uploaded file is for (written ones are `batch_output` and `evaluation_output`).
UPLOAD_PURPOSES = ("batch", "evaluation")
#: The purpose of a file still being written (a batch's output while its lines run): no route shows one until it is
#: published with its own purpose.
PARTIAL = "partial"


class FileTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than {limit} bytes")
        self.limit = limit


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex}"


def store_file(session: Session, *, api_key_id: str, purpose: str, filename: str, stream: IO[bytes],
               max_bytes: int, now: datetime) -> File:
    """Copies `stream` into a new file in the caller's transaction, a part at a time; raises FileTooLarge (the
    caller rolls back) past `max_bytes`."""
    return write_file(session, api_key_id=api_key_id, purpose=purpose, filename=filename,
                      parts=iter(lambda: stream.read(PART_BYTES), b""), max_bytes=max_bytes, now=now)


def write_file(session: Session, *, api_key_id: str, purpose: str, filename: str, parts: Iterable[bytes],
               max_bytes: int | None, now: datetime, file_id: str | None = None) -> File:
    """A new file of the bytes `parts` yields, regrouped into parts of PART_BYTES, in the caller's transaction."""
    file = File(id=file_id or new_file_id(), api_key_id=api_key_id, purpose=purpose, filename=filename, bytes=0,
                created_at=now)
    session.add(file)
    session.flush()
    size, number, pending = 0, 0, bytearray()
    for data in parts:
        size += len(data)
        if max_bytes is not None and size > max_bytes:
            raise FileTooLarge(max_bytes)
        pending += data
        while len(pending) >= PART_BYTES:
            session.execute(insert(FilePart), [{"file_id": file.id, "number": number,
                                                "data": bytes(pending[:PART_BYTES])}])
            del pending[:PART_BYTES]
            number += 1
    if pending:
        session.execute(insert(FilePart), [{"file_id": file.id, "number": number, "data": bytes(pending)}])
    file.bytes = size
    return file


def new_partial_file(session: Session, *, file_id: str, api_key_id: str, filename: str, now: datetime) -> None:
    """An empty file to be written a piece at a time (`append`), hidden until `publish`."""
    session.add(File(id=file_id, api_key_id=api_key_id, purpose=PARTIAL, filename=filename, bytes=0, created_at=now))
    session.flush()


def append(session: Session, file_id: str, data: bytes) -> None:
    """`data` added at the file's end, in parts of at most PART_BYTES, in the caller's transaction."""
    if not data:
        return
    first = session.scalar(select(func.coalesce(func.max(FilePart.number) + 1, 0))
                           .where(FilePart.file_id == file_id)) or 0
    session.execute(insert(FilePart), [{"file_id": file_id, "number": first + i, "data": data[start:start + PART_BYTES]}
                                       for i, start in enumerate(range(0, len(data), PART_BYTES))])
    session.execute(update(File).where(File.id == file_id).values(bytes=File.bytes + len(data)))


def publish(session: Session, file_ids: list[str], purpose: str, now: datetime) -> None:
    """Partial files shown from now on, as files of `purpose` created `now`."""
    session.execute(update(File).where(File.id.in_(file_ids), File.purpose == PARTIAL)
                    .values(purpose=purpose, created_at=now))


def delete_files(session: Session, file_ids: list[str]) -> None:
    session.execute(delete(FilePart).where(FilePart.file_id.in_(file_ids)))
    session.execute(delete(File).where(File.id.in_(file_ids)))


#: What a route may show: neither a file still being written nor a deleted one.
_SHOWN = (File.purpose != PARTIAL, File.deleted_at.is_(None))


def own_file(session: Session, api_key_id: str, file_id: str) -> File | None:
    return session.scalars(select(File).where(File.id == file_id, File.api_key_id == api_key_id, *_SHOWN)
                           ).one_or_none()


def list_files(session: Session, api_key_id: str, limit: int, after: str | None, purpose: str | None) -> list[File]:
    """The key's files (of `purpose`, if given), newest first; `after`: the id the previous page ended with."""
    return newest_first(session, File, api_key_id, limit, after, *_SHOWN,
                        *([File.purpose == purpose] if purpose else []))


def delete_file(session: Session, api_key_id: str, file_id: str, now: datetime) -> bool:
    """Deletes the key's shown file (`DELETE /v1/files/{id}`), in the caller's transaction; False if there was no
    such file (deleted already, say)."""
    if own_file(session, api_key_id, file_id) is None:
        return False
    delete_bytes(session, [file_id], now)
    return True


def delete_bytes(session: Session, file_ids: list[str], now: datetime) -> None:
    """Deletes the files' bytes and marks their rows deleted: a row stays while a batch or an evaluation names it
    as its input (a foreign key; `store/retention.py` deletes it once nothing does)."""
    session.execute(delete(FilePart).where(FilePart.file_id.in_(file_ids)))
    session.execute(update(File).where(File.id.in_(file_ids)).values(deleted_at=now))


def read_parts(sessions: sessionmaker[Session], file_id: str) -> Iterator[bytes]:
    """The file's bytes, a part at a time, each part read in a short session of its own (a long download holds
    no connection between parts)."""
    number = 0
    while True:
        with sessions() as session:
            data = session.scalar(select(FilePart.data).where(FilePart.file_id == file_id,
                                                              FilePart.number == number))
        if data is None:
            return
        yield bytes(data)
        number += 1


class DeletedWhileRead(Exception):
    """The file was deleted while it was read: what was read is not the whole file."""


class LineTooLong(Exception):
    def __init__(self, line: int, limit: int) -> None:
        super().__init__(f"line {line} is longer than {limit} bytes")
        self.line = line
        self.limit = limit


def read_lines(sessions: sessionmaker[Session], file_id: str, max_line_bytes: int) -> Iterator[bytes]:
    """The file's lines (without their line ends), read a part at a time; raises LineTooLong rather than hold a
    line longer than `max_line_bytes`, and DeletedWhileRead when the parts end short of the file's size: deleted
    meanwhile (each part is read in a session of its own, so a deletion may fall between two)."""
    with sessions() as session:
        size = session.scalar(select(File.bytes).where(File.id == file_id))
    rest, number, read = b"", 0, 0
    for part in read_parts(sessions, file_id):
        read += len(part)
        lines = (rest + part).split(b"\n")
        rest = lines.pop()
        for line in lines:
            number += 1
            if len(line) > max_line_bytes:
                raise LineTooLong(number, max_line_bytes)
            yield line.removesuffix(b"\r")
        if len(rest) > max_line_bytes:
            raise LineTooLong(number + 1, max_line_bytes)
    if read != size:
        raise DeletedWhileRead(file_id)
    if rest:
        yield rest.removesuffix(b"\r")


def file_to_public(file: File) -> dict[str, Any]:
    return {"id": file.id, "object": "file", "bytes": file.bytes, "created_at": unix_seconds(file.created_at),
            "filename": file.filename, "purpose": file.purpose}
