"""The file store's deletion: a deleted file's bytes go and no read shows it, its row stays for what names it; a
check reading a file that is deleted under it learns that its lines are not the whole file."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.file_lines import BadLine, raw_lines
from core.settings import Settings
from models.db import transaction
from models.tables import ApiKey, File, FilePart
from store import files
from tests.doubles import ManualClock


def _stored(sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock, content: bytes) -> str:
    with transaction(sessions) as session:
        return files.store_file(session, api_key_id=api_key.id, purpose="batch", filename="in.jsonl",
                                stream=io.BytesIO(content), max_bytes=len(content), now=clock.now).id


def test_a_deleted_file_loses_its_bytes_and_shows_no_more_but_keeps_its_row(
        sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock) -> None:
    kept = _stored(sessions, api_key, clock, b'{"a": 1}\n')
    gone = _stored(sessions, api_key, clock, b"x" * (files.PART_BYTES + 10))  # two parts
    with transaction(sessions) as session:
        assert files.delete_file(session, "key-of-another", gone, clock.now) is False  # not the key's
        assert files.delete_file(session, api_key.id, gone, clock.now) is True
    with sessions() as session:
        assert files.own_file(session, api_key.id, gone) is None
        assert [file.id for file in files.list_files(session, api_key.id, 10, None, None)] == [kept]
        assert session.scalar(select(func.count()).select_from(FilePart).where(FilePart.file_id == gone)) == 0
        row = session.get(File, gone)
        assert row is not None and row.deleted_at == clock.now
        assert files.own_file(session, api_key.id, kept) is not None
    with transaction(sessions) as session:
        assert files.delete_file(session, api_key.id, gone, clock.now) is False  # once


@pytest.mark.parametrize("parts_read", [0, 1])
def test_a_check_whose_file_is_deleted_under_it_ends_with_a_bad_line(
        sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock, parts_read: int) -> None:
    """The file is deleted after the check has read `parts_read` of its two parts: the lines read are not the
    file, so the check ends with a bad line saying so, rather than judge the part it read as the whole."""
    line = b'{"custom_id": "%s"}\n' % (b"a" * 100)  # ~8,600 lines a part: within the lines a file may hold
    file_id = _stored(sessions, api_key, clock, line * (files.PART_BYTES // len(line) + 100))
    lines = raw_lines(sessions, Settings(), file_id)
    seen = 0
    if parts_read:
        while seen < files.PART_BYTES // len(line):  # every line of the first part
            assert isinstance(next(lines), tuple)
            seen += 1
    with transaction(sessions) as session:
        files.delete_file(session, api_key.id, file_id, clock.now)
    rest = list(lines)
    assert all(isinstance(item, tuple) for item in rest[:-1])
    last = rest[-1]
    assert isinstance(last, BadLine) and "deleted while it was checked" in last.error["message"]
    assert last.error["line"] == seen + len(rest)  # the line after the last one read
