"""`store.batch_output`: a batch's output and error files written as its lines end, in the input's order, a
prefix at a time; hidden until the batch ends; the same bytes as written whole at the end; a second writer's
lines never appended twice; deleted with a check that fails — on SQLite with a hand-moved clock, no processes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from core.tasks import TASK_FILL_MASK
from models.tables import ApiKey, Batch, File
from store import batch_output, batch_rows, batches, files, job_reads, jobs
from store.jobs import Claim, Outcome
from tests.batch_rows import line_rows, ran
from tests.doubles import ManualClock
from tests.unit.conftest import begun_batch

ERROR = {"code": "invalid_line", "message": "line 3: not valid JSON", "line": 3, "param": None}


def _queue(sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock, batch_id: str,
           numbers: list[int], checked: int, row_inputs: int = 1) -> None:
    """The check's progress: lines `numbers` (file line numbers: a gap is a blank line) queued, `checked` so far;
    `row_inputs` of them a row (`store/batch_rows.py`)."""
    rows = line_rows(batch_id, api_key.id, numbers, clock(), row_inputs=row_inputs)
    assert batches.add_checked_lines(sessions, batch_id, rows, checked, clock())


def _run(sessions: sessionmaker[Session], clock: ManualClock, count: int, fail: tuple[int, ...] = ()) -> list[Claim]:
    """A worker's pass over the next `count` queued lines, in line order (rows of one line, or `count` rows): those
    whose line is in `fail` failed."""
    claims = jobs.claim_more(sessions, TASK_FILL_MASK, count, clock, 60).claims
    outcomes = []
    for claim in claims:
        results = [(None, {"code": "input_error", "message": "bad"}) if number in fail
                   else ([[{"token_str": f"w{number}", "score": 0.5}]], None) for number in _lines(claim)]
        output, failed = batch_rows.row_output(results)
        outcomes.append(Outcome(claim, output=output, failed_lines=failed))
    jobs.finish(sessions, outcomes, clock(), len(claims), 1.0)
    return claims


def _lines(claim: Claim) -> list[int]:
    """The file line numbers of a claimed row's lines (each says its own)."""
    return [int(line["input"]["input_string"][0].split()[1]) for line in claim.input["lines"]]


def _batch(sessions: sessionmaker[Session], batch_id: str) -> Batch:
    with sessions() as session:
        return session.get_one(Batch, batch_id)


def _content(sessions: sessionmaker[Session], file_id: str | None) -> bytes:
    assert file_id is not None
    return b"".join(files.read_parts(sessions, file_id))


def _custom_ids(data: bytes) -> list[str]:
    return [json.loads(line)["custom_id"] for line in data.splitlines()]


def _started(sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock, count: int) -> str:
    batch_id = begun_batch(sessions, api_key, clock)
    _queue(sessions, api_key, clock, batch_id, list(range(1, count + 1)), count)
    with sessions() as session:
        assert batches.start_batch(session, batch_id, count, clock())
    return batch_id


def test_lines_are_written_as_they_end_up_to_the_first_still_in_flight(
        sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock) -> None:
    batch_id = _started(sessions, api_key, clock, 10)
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 0  # every line queued
    _run(sessions, clock, 4, fail=(2,))
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=5) == 0  # 4 ended: fewer than asked
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=4) == 4
    batch = _batch(sessions, batch_id)
    assert batch.output_through == 4
    assert _custom_ids(_content(sessions, batch.output_file_id)) == ["r1", "r3", "r4"]
    assert _custom_ids(_content(sessions, batch.error_file_id)) == ["r2"]
    # Lines 5 and 6 claimed (running), 7 and 8 ended: nothing past line 4 is written before 5 has ended.
    running = jobs.claim_more(sessions, TASK_FILL_MASK, 2, clock, 60).claims
    _run(sessions, clock, 2)
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 0
    jobs.finish(sessions, [ran(claim, output=[[]]) for claim in running], clock(), 2, 1.0)
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 4
    assert _custom_ids(_content(sessions, _batch(sessions, batch_id).output_file_id)) == [
        "r1", "r3", "r4", "r5", "r6", "r7", "r8"]


def test_the_files_are_hidden_until_the_batch_ends_and_hold_what_a_whole_write_holds(
        sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock) -> None:
    """One batch written a few lines at a time as they end, one written whole at its end: the same lines, byte for
    byte (but for the ids); neither file shown, nor named by its batch, before the batch has ended."""
    progressive, whole = _started(sessions, api_key, clock, 9), _started(sessions, api_key, clock, 9)
    for _ in range(3):
        _run(sessions, clock, 3, fail=(4, 8))  # the first batch's lines, three a pass
        assert batch_output.write_ready(sessions, progressive, clock(), fewest=1) == 3
        partial = _batch(sessions, progressive)
        with sessions() as session:
            assert files.own_file(session, api_key.id, str(partial.output_file_id)) is None
            listed = {file.id for file in files.list_files(session, api_key.id, 100, None, None)}
            assert listed and not listed & {partial.output_file_id, partial.error_file_id}
            public = batches.batch_to_public(partial, batches.request_counts(session, partial))
        assert (public["output_file_id"], public["error_file_id"]) == (None, None)
    _run(sessions, clock, 9, fail=(4, 8))  # the other batch's, in one pass: its files are written at its end
    assert _batch(sessions, whole).output_file_id is None
    for batch_id in (progressive, whole):
        assert batches.due_for_finalizing(sessions, 10).count(batch_id) == 1
        batches.finalize(sessions, batch_id, clock)
    ended = {batch_id: _batch(sessions, batch_id) for batch_id in (progressive, whole)}
    assert ended[progressive].status == ended[whole].status == "completed"

    def comparable(data: bytes) -> list[dict[str, Any]]:
        """Less what names the job, and the size of the pass it ran in."""
        lines = [json.loads(line) for line in data.splitlines()]
        for line in lines:
            line.pop("id")
            if line["response"]:
                body = line["response"]["body"]
                body.pop("id"), body.pop("urls"), body["metrics"].pop("batch_size")
        return lines

    for kind in ("output_file_id", "error_file_id"):
        written = {batch_id: _content(sessions, getattr(batch, kind)) for batch_id, batch in ended.items()}
        assert comparable(written[progressive]) == comparable(written[whole])
        assert len(written[progressive].splitlines()) == (7 if kind == "output_file_id" else 2)
    with sessions() as session:
        public = batches.batch_to_public(ended[progressive], batches.request_counts(session, ended[progressive]))
        assert public["output_file_id"] == ended[progressive].output_file_id
        shown = files.own_file(session, api_key.id, str(public["output_file_id"]))
    assert shown is not None and shown.purpose == "batch_output"
    assert shown.bytes == len(_content(sessions, shown.id))


def test_a_second_writer_of_the_same_lines_appends_nothing(sessions: sessionmaker[Session], api_key: ApiKey,
                                                           clock: ManualClock,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Two beats (one about to lose its lock) reading the same ended lines: the one that writes second finds the
    batch's files moved on, and appends nothing."""
    batch_id = _started(sessions, api_key, clock, 6)
    _run(sessions, clock, 3)
    read_lines = batch_output._result_lines
    raced: list[int] = []

    def another_beat_writes_first(*args: Any) -> Any:
        if not raced:
            raced.append(0)  # once: the other beat's own reads go on as usual
            raced[0] = batch_output.write_ready(sessions, batch_id, clock(), fewest=1)
        return read_lines(*args)

    monkeypatch.setattr(batch_output, "_result_lines", another_beat_writes_first)
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 0
    assert raced == [3]
    assert _custom_ids(_content(sessions, _batch(sessions, batch_id).output_file_id)) == ["r1", "r2", "r3"]


def test_blank_lines_of_the_file_leave_gaps_the_writer_passes_over(sessions: sessionmaker[Session], api_key: ApiKey,
                                                                   clock: ManualClock) -> None:
    """Written while the file is still checked: up to the last line queued so far, across line numbers that have
    no line."""
    batch_id = begun_batch(sessions, api_key, clock)
    _queue(sessions, api_key, clock, batch_id, [1, 3, 4, 7], 4)  # lines 2, 5 and 6 blank
    _run(sessions, clock, 4)
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 7
    _queue(sessions, api_key, clock, batch_id, [9], 5)
    _run(sessions, clock, 1)
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 2
    assert _custom_ids(_content(sessions, _batch(sessions, batch_id).output_file_id)) == ["r1", "r3", "r4", "r7", "r9"]


def test_a_failed_check_deletes_what_was_written_of_its_lines(sessions: sessionmaker[Session], api_key: ApiKey,
                                                              clock: ManualClock) -> None:
    batch_id = begun_batch(sessions, api_key, clock)
    _queue(sessions, api_key, clock, batch_id, [1, 2], 2)
    _run(sessions, clock, 2)
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 2
    written = _batch(sessions, batch_id)
    assert batches.fail_check(sessions, batch_id, [ERROR], clock(), total=3)
    with sessions() as session:
        assert session.get(File, written.output_file_id) is None
        assert session.get(File, written.error_file_id) is None
    failed = _batch(sessions, batch_id)
    assert (failed.output_file_id, failed.error_file_id) == (None, None)  # no longer named
    assert _content(sessions, written.output_file_id) == b""
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 0  # failed: nothing more
    assert _counts(sessions, batch_id) == {"total": 3, "completed": 0, "failed": 0}  # nor counted


def _counts(sessions: sessionmaker[Session], batch_id: str) -> dict[str, int]:
    with sessions() as session:
        return batches.request_counts(session, session.get_one(Batch, batch_id))


def test_the_counts_are_the_files_lines_and_those_ended_beyond_them(
        sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock) -> None:
    """What the files hold is counted as beat wrote it, what ended since from the lines: at every step the counts
    are those of every line's status — across blank lines, failures, a line still running, a cancel."""
    batch_id = begun_batch(sessions, api_key, clock)
    _queue(sessions, api_key, clock, batch_id, [1, 2, 4, 5, 6, 7, 8, 9], 8)  # line 3 blank
    with sessions() as session:
        assert batches.start_batch(session, batch_id, 8, clock())
    assert _counts(sessions, batch_id) == {"total": 8, "completed": 0, "failed": 0}
    _run(sessions, clock, 3, fail=(2,))  # lines 1, 2, 4 ended; none written
    assert _counts(sessions, batch_id) == {"total": 8, "completed": 2, "failed": 1}
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 4  # through line 4
    written = _batch(sessions, batch_id)
    assert (written.written_completed, written.written_failed) == (2, 1)
    assert _counts(sessions, batch_id) == {"total": 8, "completed": 2, "failed": 1}
    running = jobs.claim_more(sessions, TASK_FILL_MASK, 1, clock, 60).claims  # line 5, running
    _run(sessions, clock, 2, fail=(7,))  # lines 6 and 7 ended beyond line 5: counted, not yet written
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 0
    assert _counts(sessions, batch_id) == {"total": 8, "completed": 3, "failed": 2}
    with sessions() as session:
        assert batches.cancel_batch(session, session.get_one(Batch, batch_id), clock())  # lines 8, 9 canceled
    assert _counts(sessions, batch_id) == {"total": 8, "completed": 3, "failed": 4}
    jobs.finish(sessions, [ran(claim, output=[[]]) for claim in running], clock(), 1, 1.0)
    batches.finalize(sessions, batch_id, clock)
    ended = _batch(sessions, batch_id)
    assert ended.status == "cancelled" and (ended.written_completed, ended.written_failed) == (4, 4)
    assert _counts(sessions, batch_id) == {"total": 8, "completed": 4, "failed": 4}
    assert len(_content(sessions, ended.output_file_id).splitlines()) == 4
    assert len(_content(sessions, ended.error_file_id).splitlines()) == 4


def test_a_batch_left_finalizing_by_a_stopped_beat_is_ended_by_the_next_sweep(
        sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    batch_id = _started(sessions, api_key, clock, 3)
    _run(sessions, clock, 3)

    def beat_stops(*_args: Any, **_kwargs: Any) -> int:
        raise SystemExit("beat stopped")

    with monkeypatch.context() as patch:
        patch.setattr(batch_output, "write_ready", beat_stops)
        with pytest.raises(SystemExit):
            batches.finalize(sessions, batch_id, clock)
    assert _batch(sessions, batch_id).status == "finalizing"
    assert batches.due_for_finalizing(sessions, 10) == [batch_id]
    batches.finalize(sessions, batch_id, clock)
    ended = _batch(sessions, batch_id)
    assert ended.status == "completed" and ended.output_through == 3
    assert _custom_ids(_content(sessions, ended.output_file_id)) == ["r1", "r2", "r3"]


def test_a_chunk_queued_while_the_writer_looks_is_not_skipped(sessions: sessionmaker[Session], api_key: ApiKey,
                                                              clock: ManualClock) -> None:
    """Found by CI on PostgreSQL (a 1,000-line batch whose output lacked its first 512 lines): the check queued a
    chunk between the writer's look for lines in flight and its read of the last line, so lines it took as ended
    were still queued, and it moved past them having written nothing of them. Here a chunk is queued right after
    the writer's first read of the batch's lines."""
    batch_id = begun_batch(sessions, api_key, clock)
    _queue(sessions, api_key, clock, batch_id, [1, 2], 2)
    _run(sessions, clock, 2)
    engine = sessions.kw["bind"]
    queued: list[bool] = []

    def queue_a_chunk(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not queued and statement.lstrip().startswith("SELECT jobs.batch_line"):
            queued.append(True)
            _queue(sessions, api_key, clock, batch_id, [3, 4], 4)

    event.listen(engine, "after_cursor_execute", queue_a_chunk)
    try:
        written = batch_output.write_ready(sessions, batch_id, clock(), fewest=1)
    finally:
        event.remove(engine, "after_cursor_execute", queue_a_chunk)
    assert queued and written == 2 and _batch(sessions, batch_id).output_through == 2
    _run(sessions, clock, 2)
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 2
    assert _custom_ids(_content(sessions, _batch(sessions, batch_id).output_file_id)) == ["r1", "r2", "r3", "r4"]


def test_an_append_larger_than_a_part_is_split_and_numbered_after_the_file_s_parts(
        sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock) -> None:
    """`store.files.append`, as the writer uses it: each append's bytes in parts of at most PART_BYTES, numbered on
    from the file's last part, so that a download reads them in order."""
    first, second = b"a" * (2 * files.PART_BYTES + 10), b"b" * 5
    with sessions() as session:
        files.new_partial_file(session, file_id="file-big", api_key_id=api_key.id, filename="big", now=clock())
        files.append(session, "file-big", first)
        files.append(session, "file-big", second)
        files.append(session, "file-big", b"")
        session.commit()
    assert [len(part) for part in files.read_parts(sessions, "file-big")] == [files.PART_BYTES, files.PART_BYTES,
                                                                               10, 5]
    assert _content(sessions, "file-big") == first + second
    with sessions() as session:
        assert session.get_one(File, "file-big").bytes == len(first) + len(second)


def test_a_row_of_many_lines_is_written_whole_each_line_to_the_file_of_its_own_status(
        sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock) -> None:
    """Rows of up to 3 lines (a blank line ends one): a line that failed in a row that ran goes to the error file, its
    row's other lines to the output file; a row in flight holds back every line after it; the counts are lines."""
    batch_id = begun_batch(sessions, api_key, clock)
    _queue(sessions, api_key, clock, batch_id, [1, 2, 3, 4, 5, 6, 7, 9, 10], 9, row_inputs=3)  # line 8 blank
    with sessions() as session:
        assert batches.start_batch(session, batch_id, 9, clock())
    assert [_lines(claim) for claim in _run(sessions, clock, 3, fail=(2,))] == [[1, 2, 3]]
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 3
    running = jobs.claim_more(sessions, TASK_FILL_MASK, 3, clock, 60).claims
    assert [_lines(claim) for claim in running] == [[4, 5, 6]]
    assert [_lines(claim) for claim in _run(sessions, clock, 3, fail=(10,))] == [[7], [9, 10]]
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 0  # lines 4–6 in flight
    assert _counts(sessions, batch_id) == {"total": 9, "completed": 4, "failed": 2}
    jobs.finish(sessions, [ran(claim, output=[[]]) for claim in running], clock(), 3, 1.0)
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 7
    batch = _batch(sessions, batch_id)
    assert (batch.written_completed, batch.written_failed) == (7, 2)
    assert _custom_ids(_content(sessions, batch.output_file_id)) == ["r1", "r3", "r4", "r5", "r6", "r7", "r9"]
    errors = [json.loads(line) for line in _content(sessions, batch.error_file_id).splitlines()]
    assert [(error["custom_id"], error["error"]["code"]) for error in errors] == [("r2", "input_error"),
                                                                                  ("r10", "input_error")]
    outputs = [json.loads(line) for line in _content(sessions, batch.output_file_id).splitlines()]
    first, third = outputs[0]["response"]["body"], outputs[1]["response"]["body"]
    row_id = first["id"].rsplit("-", 1)[0]
    assert (first["id"], third["id"]) == (f"{row_id}-0", f"{row_id}-2")
    assert outputs[0]["id"] == f"batch_req_{first['id']}" and first["urls"]["get"] == f"/v1/jobs/{first['id']}"
    assert third["input"] == {"input_string": ["Line 3 has a [MASK]."]} and third["status"] == "succeeded"
    assert third["output"] == [[{"token_str": "w3", "score": 0.5}]] and third["error"] is None
    # The line as GET /v1/jobs/{id} reads it: its output line's body; a row's own id, or past its lines, is none.
    engine = sessions.kw["bind"]
    for body in (first, third):
        assert json.loads(job_reads.own_line_json(engine, api_key.id, body["id"]) or b"null") == body
    second = json.loads(job_reads.own_line_json(engine, api_key.id, f"{row_id}-1") or b"null")
    assert second["status"] == "failed" and second["error"] == {"code": "input_error", "message": "bad"}
    assert second["output"] is None and second["metadata"] is None
    assert job_reads.own_line_json(engine, api_key.id, f"{row_id}-3") is None
    assert job_reads.own_job_json(engine, api_key.id, row_id) is None
    assert job_reads.own_line_json(engine, "another key", first["id"]) is None


def test_a_write_bounded_by_most_lines_ends_with_the_row_that_holds_the_last(
        sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A row is written whole: a write of at most 4 lines that ends inside a row of 3 takes the row's end."""
    monkeypatch.setattr(batch_output, "MOST_LINES", 4)
    batch_id = begun_batch(sessions, api_key, clock)
    _queue(sessions, api_key, clock, batch_id, list(range(1, 10)), 9, row_inputs=3)
    _run(sessions, clock, 9, fail=(5,))
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 6
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 3
    batch = _batch(sessions, batch_id)
    assert (batch.output_through, batch.written_completed, batch.written_failed) == (9, 8, 1)
