"""Bad input gets a 4xx of the contract's shape naming the field and the input's index, and stores nothing.

The app runs in-process (Flask's test client) on a real SQLite file; nothing here reaches a worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from flask.testing import FlaskClient
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api import create_app
from api.validation import read_storable, unstorable
from core.settings import Settings
from migrations import run_migrations
from models.db import make_engine, make_session_factory, transaction
from models.tables import Job
from store.keys import create_key


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Settings:
    home = tmp_path_factory.mktemp("api")
    url = f"sqlite:///{home / 'distilq.db'}"
    run_migrations(url)
    return Settings(home=home, database_url=url, redis_url="redis://127.0.0.1:1/0",
                    fill_mask_model=str(tiny_models["fill-mask"]), qa_model=str(tiny_models["question-answering"]),
                    max_inputs_per_job=8, max_chars_per_input=2000, max_body_bytes=50_000)


@pytest.fixture(scope="module")
def key(settings: Settings) -> str:
    with transaction(make_session_factory(make_engine(settings.resolved_database_url))) as session:
        return create_key(session, "unit")


@pytest.fixture()
def client(settings: Settings, key: str) -> Iterator[FlaskClient]:
    app = create_app(settings)
    with app.test_client() as client:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        yield client


def job_count(settings: Settings) -> int:
    with make_session_factory(make_engine(settings.resolved_database_url))() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


FM = "/v1/fill-mask"
QA = "/v1/question-answering"
QA_OK = {"question": ["Where do I live?"], "context": ["My name is Wolfgang and I live in Berlin."]}
LONG_CONTEXT = "Berlin is a big city. " * 60
DEEP: Any = 1
for _ in range(40):
    DEEP = [DEEP]

BAD: list[tuple[str, Any, int, list[Any]]] = [
    (FM, {}, 422, ["inputs"]),
    (FM, {"inputs": {}}, 422, ["inputs", "input_string"]),
    (FM, {"inputs": {"input_string": []}}, 422, ["inputs", "input_string"]),
    (FM, {"inputs": {"input_string": "Paris is the [MASK]."}}, 422, ["inputs", "input_string"]),
    (FM, {"inputs": {"input_string": ["a [MASK]", 7]}}, 422, ["inputs", "input_string", 1]),
    (FM, {"inputs": {"input_string": ["a [MASK]", "no mask"]}}, 422, ["inputs", "input_string", 1]),
    (FM, {"inputs": {"input_string": ["a [MASK]"]}, "parameters": {"top_k": 0}}, 422, ["parameters", "top_k"]),
    (FM, {"inputs": {"input_string": ["a [MASK]"]}, "parameters": {"top_k": "2"}}, 422, ["parameters", "top_k"]),
    (FM, {"inputs": {"input_string": ["a [MASK]"]}, "parameters": {"top_k": 1000}}, 422, ["parameters", "top_k"]),
    (FM, {"inputs": {"input_string": ["a [MASK]"]}, "parameters": {"topk": 2}}, 422, ["parameters", "topk"]),
    (FM, {"inputs": {"input_string": ["a [MASK]"]}, "parameters": {"targets": []}}, 422, ["parameters", "targets"]),
    (FM, {"inputs": {"input_string": ["a [MASK]"]}, "parameters": {"targets": [" "]}}, 422,
     ["parameters", "targets"]),
    (FM, {"inputs": {"input_string": ["a [MASK]"]}, "extra": 1}, 422, ["extra"]),
    (FM, {"inputs": {"input_string": ["a [MASK]"]}, "webhook_events_filter": ["done"]}, 422,
     ["webhook_events_filter", 0]),
    (FM, {"inputs": {"input_string": ["a [MASK]"] * 9}}, 422, ["inputs", "input_string"]),
    (FM, {"inputs": {"input_string": ["a [MASK]", "x" * 2001]}}, 422, ["inputs", "input_string", 1]),
    (FM, {"inputs": {"input_string": ["ok [MASK]", "Paris " * 600 + "[MASK]"]}}, 422, ["inputs", "input_string", 1]),
    (FM, {"inputs": {"input_string": ["a [MASK]\u0000"]}}, 422, ["inputs", "input_string", 0]),
    (FM, {"inputs": {"input_string": ["a [MASK]"]}, "metadata": {"a": DEEP}}, 422, ["metadata", "a", *[0] * 30]),
    (QA, {"inputs": {"question": ["a", "b"], "context": ["c"]}}, 422, ["inputs"]),
    (QA, {"inputs": {"question": [], "context": []}}, 422, ["inputs", "question"]),
    (QA, {"inputs": {"question": ["Where?"]}}, 422, ["inputs", "context"]),
    (QA, {"inputs": QA_OK, "parameters": {"top_k": 0}}, 422, ["parameters", "top_k"]),
    (QA, {"inputs": QA_OK, "parameters": {"max_answer_len": 0}}, 422, ["parameters", "max_answer_len"]),
    (QA, {"inputs": QA_OK, "parameters": {"max_seq_len": 100, "doc_stride": 101}}, 422, ["parameters"]),
    (QA, {"inputs": QA_OK, "parameters": {"max_seq_len": 16, "doc_stride": 15}}, 422, ["parameters"]),
    (QA, {"inputs": QA_OK, "parameters": {"max_seq_len": 600}}, 422, ["parameters", "max_seq_len"]),
    (QA, {"inputs": QA_OK, "parameters": {"handle_impossible_answer": "yes"}}, 422,
     ["parameters", "handle_impossible_answer"]),
    (QA, {"inputs": {"question": ["Where?", "Where do I live?"], "context": ["Here.", LONG_CONTEXT]},
          "parameters": {"max_seq_len": 16, "doc_stride": 10}}, 422, ["inputs", "question", 1]),
    (QA, {"inputs": {"question": ["Where do I live? " * 10], "context": [LONG_CONTEXT]},
          "parameters": {"max_seq_len": 32}}, 422, ["inputs", "question", 0]),
    (QA, {"inputs": {"question": ["Where?"], "context": [LONG_CONTEXT * 3]},
          "parameters": {"max_seq_len": 24, "doc_stride": 16}}, 422, ["inputs", "context", 0]),
    (QA, {"inputs": {"question": ["Where?"], "context": ["   "]}}, 422, ["inputs", "context", 0]),
]


@pytest.mark.parametrize(("route", "body", "status", "loc"), BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_body_is_named_and_nothing_is_stored(client: FlaskClient, settings: Settings, route: str, body: Any,
                                                 status: int, loc: list[Any]) -> None:
    before = job_count(settings)
    response = client.post(route, json=body)
    assert response.status_code == status, response.json
    error = response.json["error"]
    assert set(error) == {"code", "message", "details"}
    assert loc in [d["loc"] for d in error["details"]], error
    assert job_count(settings) == before


@pytest.mark.parametrize("raw", [b'{"inputs": ', b"", b"\xff\xfe", b"[" * 100_000, b'"text"', b"[1, 2]"])
def test_malformed_or_non_object_json(client: FlaskClient, settings: Settings, raw: bytes) -> None:
    before = job_count(settings)
    response = client.post(FM, data=raw, content_type="application/json")
    assert response.status_code in (400, 413, 422)
    assert response.json["error"]["code"] in ("malformed_json", "invalid_request", "payload_too_large")
    assert job_count(settings) == before


def test_oversized_body_is_413(client: FlaskClient) -> None:
    response = client.post(FM, json={"inputs": {"input_string": ["a [MASK] " + "x" * 60_000]}})
    assert response.status_code == 413 and response.json["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("header", [None, "Basic abc", "Bearer ", "Bearer dq_wrong"])
def test_missing_or_wrong_key_is_401(client: FlaskClient, header: str | None) -> None:
    client.environ_base.pop("HTTP_AUTHORIZATION")
    headers = {"Authorization": header} if header else {}
    response = client.post(FM, json={"inputs": {"input_string": ["a [MASK]"]}}, headers=headers)
    assert response.status_code == 401 and response.json["error"]["code"] == "unauthorized"


def test_framework_errors_use_the_same_shape(client: FlaskClient) -> None:
    assert client.get("/v1/nowhere").json["error"]["code"] == "not_found"
    response = client.get(FM)
    assert response.status_code == 405 and response.json["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_too_long_idempotency_key_is_refused(client: FlaskClient, settings: Settings) -> None:
    before = job_count(settings)
    response = client.post(FM, json={"inputs": {"input_string": ["a [MASK]"]}}, headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_idempotency_key"
    assert job_count(settings) == before


def test_accepted_job_is_stored_even_when_redis_is_down(client: FlaskClient, settings: Settings) -> None:
    """The row is committed before publishing; a failed publish leaves it queued for `beat`."""
    before = job_count(settings)
    response = client.post(FM, json={"inputs": {"input_string": ["Paris is the [MASK] of France."]}})
    assert response.status_code == 202 and response.json["status"] == "queued"
    assert job_count(settings) == before + 1
    assert response.json["parameters"] == {"top_k": 5}


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/h", "http://127.1/", "http://169.254.169.254/", "ftp://x.org/",
                                 "http://localhost/", "http://[::ffff:127.0.0.1]/", "http://0x7f.1/"])
def test_private_webhook_targets_are_refused_at_submission(client: FlaskClient, settings: Settings, url: str) -> None:
    before = job_count(settings)
    response = client.post(FM, json={"inputs": {"input_string": ["a [MASK]"]}, "webhook": url})
    assert response.status_code == 422
    assert ["webhook"] in [d["loc"] for d in response.json["error"]["details"]]
    assert job_count(settings) == before


MASKED = {"inputs": {"input_string": ["a [MASK]"]}}
UNSAFE: list[tuple[str, Any, list[Any]]] = [
    (FM, {"inputs": {"input_string": ["a [MASK] \ud800"]}}, ["inputs", "input_string", 0]),
    (FM, {**MASKED, "metadata": {"\ud800": 1}}, ["metadata"]),
    (FM, {**MASKED, "metadata": {"k": ["ok", "\udfff"]}}, ["metadata", "k", 1]),
    (QA, {"inputs": {"question": ["Where?"], "context": ["\ud83d"]}}, ["inputs", "context", 0]),
    (FM, {"inputs": {"input_string": ["[MASK] " * 33]}}, ["inputs", "input_string", 0]),
    (FM, {"inputs": {"input_string": ["[MASK] " * 30 + "x" * 1700] * 8}, "parameters": {"top_k": 100}},
     ["parameters", "top_k"]),
]


@pytest.mark.parametrize(("route", "body", "loc"), UNSAFE, ids=[f"{i}" for i in range(len(UNSAFE))])
def test_unstorable_text_and_unbounded_output_are_422(client: FlaskClient, settings: Settings, route: str, body: Any,
                                                      loc: list[Any]) -> None:
    """Lone surrogates once made a 500 (no UTF-8 encoder takes them); 500 masks × top_k 100 once made 179 MB."""
    before = job_count(settings)
    response = client.post(route, json=body)
    assert response.status_code == 422, response.data
    assert loc in [d["loc"] for d in response.json["error"]["details"]]
    assert job_count(settings) == before


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_numbers_json_cannot_carry_are_422(client: FlaskClient, settings: Settings, number: bytes) -> None:
    """Python's parser takes them; echoed back they made `{"x": NaN}`, which no other parser reads."""
    before = job_count(settings)
    raw = b'{"inputs": {"input_string": ["a [MASK]"]}, "metadata": {"x": ' + number + b"}}"
    response = client.post(FM, data=raw, content_type="application/json")
    assert response.status_code == 422
    assert ["metadata", "x"] in [d["loc"] for d in response.json["error"]["details"]]
    json.loads(response.data, parse_constant=lambda name: pytest.fail(f"the answer carries {name}"))
    assert job_count(settings) == before


def test_metadata_comes_back_as_it_was_sent(client: FlaskClient) -> None:
    """Integers beyond 64 bits and their neighbours, exactly: orjson, which reads the job's columns, makes an integer
    beyond 64 bits a float (123456789012345678901234567890 came back as 1.2345678901234568e+29 until
    `core.json_text.json_value` handed such text to Python's json)."""
    metadata = {"order": 123456789012345678901234567890, "negative": -(2**64) - 7, "u64": 2**64 - 1,
                "nested": [{"id": 98765432109876543210987}], "large float": 1e300, "ratio": 0.1}
    raw = json.dumps({"inputs": {"input_string": ["a [MASK]"]}, "metadata": metadata}).encode()
    created = client.post(FM, data=raw, content_type="application/json")
    assert created.status_code == 202, created.data
    read = json.loads(client.get(f"/v1/jobs/{created.json['id']}").data)
    assert read["metadata"] == metadata
    assert [type(read["metadata"][name]) for name in metadata] == [type(value) for value in metadata.values()]
    assert type(read["metadata"]["nested"][0]["id"]) is int


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_is_415(client: FlaskClient, settings: Settings,
                                                 content_type: str | None) -> None:
    before = job_count(settings)
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(FM, data=b'{"inputs": {"input_string": ["a [MASK]"]}}', headers=headers)
    assert response.status_code == 415 and response.json["error"]["code"] == "unsupported_media_type"
    assert job_count(settings) == before


@pytest.mark.parametrize("limit", ["²", "٣", "1" * 5000, "-1", "1.5"])
def test_a_limit_that_is_not_a_small_ascii_number_is_422(client: FlaskClient, limit: str) -> None:
    response = client.get("/v1/jobs", query_string={"limit": limit})
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["loc"] == ["query", "limit"]


def test_prefer_wait_reads_ascii_digits_of_any_length() -> None:
    from api.waiting import MAX_WAIT_S, requested_wait_s

    assert requested_wait_s("wait=" + "9" * 5000) == MAX_WAIT_S  # once int() of 5,000 digits: a 500
    assert requested_wait_s("wait=12") == 12
    assert requested_wait_s("wait=٣") is None  # not ASCII digits: not a wait preference this API reads


def test_qa_is_bounded_by_tokens_not_by_chunks(client: FlaskClient, settings: Settings) -> None:
    """A long context at max_seq_len 16 splits into hundreds of chunks of 16 tokens, less work than 64 chunks of
    384: accepted now, where a bound of 64 chunks refused it."""
    body = {"inputs": {"question": ["Where?"], "context": [LONG_CONTEXT]},
            "parameters": {"max_seq_len": 16, "doc_stride": 8}}
    response = client.post(QA, json=body)
    assert response.status_code == 202, response.json


def test_job_lists_leave_outputs_out_unless_asked(client: FlaskClient, settings: Settings) -> None:
    from core.clock import utcnow
    from store import jobs

    job_id = client.post(FM, json=MASKED).json["id"]
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    claims = jobs.claim_more(sessions, "fill-mask", 1000, utcnow, 30).claims  # this module's queued jobs
    (claim,) = [claim for claim in claims if claim.job_id == job_id]
    jobs.finish(sessions, [jobs.Outcome(claim, output=[["big"] * 1000])], utcnow(), 1, 1.0)

    listed = client.get("/v1/jobs").json["data"]
    assert listed and all("output" not in job for job in listed)
    with_outputs = client.get("/v1/jobs", query_string={"include": "output"}).json["data"]
    assert {job["id"]: job["output"] for job in with_outputs}[job_id] == [["big"] * 1000]
    assert client.get(f"/v1/jobs/{job_id}").json["output"] == [["big"] * 1000]


def test_a_passing_dns_failure_of_the_webhook_host_is_503_not_422(client: FlaskClient, settings: Settings,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The resolver is the seam: no real resolver here fails with EAI_AGAIN on demand."""
    import functools
    import socket

    from webhooks import check_target

    def lookup(*_args: Any, **_kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr("api.validation.check_target", functools.partial(check_target, lookup=lookup))
    before = job_count(settings)
    response = client.post(FM, json={**MASKED, "webhook": "https://hooks.example.com/in"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json["error"]["code"] == "webhook_lookup_failed"
    assert job_count(settings) == before


def test_jobs_show_the_served_models_name_where_one_is_set(settings: Settings, key: str) -> None:
    """A model loaded from a local directory shows as that directory's path, unless a name is set for it; an
    evaluation may then ask for the model by that name only."""
    named = settings.model_copy(update={"fill_mask_model_name": "distilbert-base-cased"})
    for served, shown in ((settings, settings.fill_mask_model), (named, "distilbert-base-cased")):
        with create_app(served).test_client() as client:
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
            answer = client.post(FM, json={"inputs": {"input_string": ["Paris is the [MASK] of France."]}})
            assert answer.status_code == 202 and answer.json["model"] == shown
            assert client.get(f"/v1/jobs/{answer.json['id']}").json["model"] == shown
            asked = client.post("/v1/evaluations", json={"task": "fill-mask", "model": settings.fill_mask_model,
                                                         "input_file_id": "file-none"})
            assert asked.status_code == 422
            problems = {tuple(d["loc"]): d["msg"] for d in asked.json["error"]["details"]}
            assert (("model",) in problems) == (served is named), problems
            assert served is not named or shown in problems[("model",)]


@pytest.mark.parametrize("route", ["/v1/batches", "/v1/evaluations"])
@pytest.mark.parametrize("after", ["\x00'\x97I\x917", "x" * 65, "é"])
def test_a_page_cursor_that_is_no_id_is_422(client: FlaskClient, route: str, after: str) -> None:
    """`after=%00…` once made PostgreSQL's driver refuse the read: a 500 (schemathesis's fuzzing found it)."""
    response = client.get(route, query_string={"after": after})
    assert response.status_code == 422, response.data
    assert response.json["error"]["details"][0]["loc"] == ["query", "after"]


def test_a_pool_with_no_connection_to_spare_is_a_503(settings: Settings) -> None:
    """What SQLAlchemy's pool raises when all its connections stay busy past `pool_timeout` (a gevent process
    serves up to 1,000 requests over 20 connections) is the database's 503, not a 500."""
    app = create_app(settings)

    def exhausted() -> None:
        raise PoolTimeout("QueuePool limit of size 20 overflow 0 reached, connection timed out, timeout 30.00")

    app.add_url_rule("/pool-exhausted", view_func=exhausted)
    answer = app.test_client().get("/pool-exhausted")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.get_json()["error"]["code"] == "database_unavailable"


#: JSON texts holding what `unstorable` refuses: a NUL escaped in a value and in a key, lone surrogates (escaped; and
#: as bytes, which Python's json decodes with surrogatepass), non-finite numbers, nesting one level too deep.
MAY_NOT_STORE = [b'{"a": "x\\u0000"}', b'{"k\\u0000": 1}', b'{"a": ["\\ud800"]}', b'{"a": "\xed\xa0\x80"}',
                 b'{"a": NaN}', b'{"a": -Infinity}', b'{"a": 1e400}', b'{"a": ' + b"[" * 33 + b"]" * 33 + b"}"]
#: Texts whose value holds nothing `unstorable` refuses, read without a walk: long numbers (19 digits and more
#: included), escapes, non-ASCII, a surrogate pair, nesting as deep as is allowed.
STORABLE = [b'{"inputs": {"input_string": ["Paris is the [MASK] of France."]}, "parameters": {"top_k": 5}}',
            b'{"n": 1234567890123456789012345, "m": -9223372036854775809, "f": 1e300, "s": "0123456789012345678901"}',
            '{"é": "\\u00e9\\ud83d\\ude00\\n😀"}'.encode(), b'{"a": ' + b"[" * 31 + b"]" * 31 + b"}"]


@pytest.mark.parametrize("raw", MAY_NOT_STORE, ids=[f"{i}" for i in range(len(MAY_NOT_STORE))])
def test_text_that_may_hold_the_unstorable_is_walked(raw: bytes) -> None:
    """`read_storable` lets a body or a file's line skip `unstorable`'s walk only where its text shows the walk would
    find nothing: never for these."""
    value, storable = read_storable(raw)
    assert not storable
    assert unstorable(value)


@pytest.mark.parametrize("raw", STORABLE, ids=[f"{i}" for i in range(len(STORABLE))])
def test_plain_text_is_read_as_pythons_json_reads_it_without_a_walk(raw: bytes) -> None:
    value, storable = read_storable(raw)
    assert storable
    assert value == json.loads(raw) and unstorable(value) == []
    assert json.dumps(value) == json.dumps(json.loads(raw))  # the same types: a long integer stays an integer


#: Text with what JSON can carry and a database cannot: NULs, lone surrogates; and what it can, non-ASCII.
_ODD_TEXT = st.sampled_from(["\x00", "a\ud800", "\udfff", "é😀", "\\u0000"]) | st.text(max_size=12)
#: Any value Python's json writes: integers beyond 64 bits, every float (NaN, infinities), odd text, keys alike.
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-2**80, 2**80) | st.floats() | _ODD_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_ODD_TEXT, inner, max_size=3), max_leaves=16)


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(value=_VALUES, ascii_only=st.booleans(), depth=st.integers(0, 40))
def test_any_json_text_is_read_as_pythons_json_reads_it_and_walked_unless_its_text_shows_nothing_to_find(
        value: Any, ascii_only: bool, depth: int) -> None:
    """`read_storable` (orjson where it reads alike, the walk skipped where the text shows nothing to find) against
    Python's json and a walk of every value: the same values and types, and never a skip where the walk finds
    something."""
    raw = ("[" * depth + json.dumps(value, ensure_ascii=ascii_only) + "]" * depth).encode("utf-8", "surrogatepass")
    read, storable = read_storable(raw)
    assert json.dumps(read) == json.dumps(json.loads(raw))  # NaN as NaN, an integer as an integer
    assert not (storable and unstorable(read))
