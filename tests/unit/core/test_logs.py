"""`core.logs`: JSON lines, and an API process's lines written from a thread of their own."""

from __future__ import annotations

import json
import logging
import logging.config
import threading
from collections.abc import Iterator

import pytest

from core.logs import BackgroundStreamHandler, logging_config


@pytest.fixture(autouse=True)
def logging_enabled() -> Iterator[None]:
    """INFO records made, whatever an earlier test of this process left `logging.disable`d (a bench's main run
    in-process turns warnings and below off)."""
    disabled = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    yield
    logging.disable(disabled)


def test_lines_handed_to_the_background_writer_are_all_written_whole(capsys: pytest.CaptureFixture[str]) -> None:
    config = logging_config(background=True)["handlers"]["distilq"]
    assert config["()"] is BackgroundStreamHandler
    handler = BackgroundStreamHandler()  # binds stderr now: pytest's capture
    handler.setFormatter(logging.Formatter("%(message)s|%(path)s|%(exc_text)s"))
    logger = logging.Logger("background-test")
    logger.addHandler(handler)

    def log_from_thread(thread: int) -> None:
        for line in range(50):
            logger.info("thread %d line %d", thread, line, extra={"path": f"/v1/jobs/{thread}"})

    threads = [threading.Thread(target=log_from_thread, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed", extra={"path": "-"})
    handler.close()  # as logging.shutdown at exit: what is queued is written first

    lines = capsys.readouterr().err.splitlines()
    written = [line for line in lines if line.startswith("thread ")]
    assert sorted(written) == sorted(f"thread {t} line {n}|/v1/jobs/{t}|None" for t in range(8) for n in range(50))
    # Each thread's lines in the order it logged them.
    for t in range(8):
        assert [line for line in written if line.startswith(f"thread {t} ")] == [
            f"thread {t} line {n}|/v1/jobs/{t}|None" for n in range(50)]
    failure = "\n".join(lines[lines.index(next(line for line in lines if line.startswith("failed|"))):])
    assert "ValueError: boom" in failure  # the exception formatted by the writer, as a StreamHandler would


def test_the_json_lines_keep_their_fields_through_the_background_writer(capsys: pytest.CaptureFixture[str]) -> None:
    logging.config.dictConfig(logging_config(background=True))
    try:
        logging.getLogger("gunicorn.access").info("GET /healthz 200 0.4 ms", extra={"path": "/healthz", "status": 200})
    finally:
        logging.shutdown()  # closes the configured handlers: the background writer ends
        logging.config.dictConfig(logging_config())
    [line] = [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"gunicorn.access"' in line]
    assert (line["logger"], line["level"], line["message"], line["path"], line["status"]) == (
        "gunicorn.access", "INFO", "GET /healthz 200 0.4 ms", "/healthz", 200)
