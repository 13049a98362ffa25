"""Evaluations over real processes, on the tiny checkpoint: a file uploaded, checked whole, its examples run as jobs
of a lower priority, scored by beat — fill-mask accuracy, MRR and pseudo-perplexity equal to an independent
computation with transformers here, QA exact match and F1 equal to the reference answers' — a bad line fails the
evaluation naming it, a canceled one ends with what ran, and the CLI prints the metrics. Beat's periodic sweep is
600 s apart here: every evaluation ends because the worker that wrote its last example, or the API that canceled
it, asked beat for a sweep (`core/sweep_requests.py`)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook
from transformers import pipeline

from evaluations.squad import best
from tests.integration.receiver import Receiver
from tests.integration.stack import Stack, wait_for
from tests.unit.worker.engine.test_question_answering import REFERENCE
from tests.unit.worker.engine.test_scoring import expected as expected_scores

pytestmark = pytest.mark.stack(start=("api", "worker", "webhooks", "beat"), env={
    "DISTILQ_SWEEP_INTERVAL_S": "0.2", "DISTILQ_WEBHOOK_ALLOW_PRIVATE": "true", "DISTILQ_RATE_LIMIT": "100000/minute"})

MASKED = ["Paris is the [MASK] of France.", "Today is a [MASK] day!", "My name is [MASK] and I live in Berlin.",
          "The quick brown [MASK] jumps over the lazy dog.", "München liegt in [MASK]."]
PLAIN = ["Paris is the capital of France.", "The river flows north through the valley of the old kingdom.",
         "Hello world, good morning."]
QA_CASES = [case for case in REFERENCE["cases"] if not case["parameters"]]


def upload(stack: Stack, http: requests.Session, lines: list[Any]) -> str:
    content = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()
    response = http.post(f"{stack.url}/v1/files", files={"file": ("examples.jsonl", content)},
                         data={"purpose": "evaluation"})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def evaluate(stack: Stack, http: requests.Session, task: str, lines: list[Any], **fields: Any) -> dict[str, Any]:
    response = http.post(f"{stack.url}/v1/evaluations",
                         json={"task": task, "input_file_id": upload(stack, http, lines), **fields})
    assert response.status_code in (200, 202), response.text
    return dict(response.json())


def wait_ended(stack: Stack, http: requests.Session, evaluation_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        evaluation = http.get(f"{stack.url}/v1/evaluations/{evaluation_id}", timeout=5).json()
        return evaluation if evaluation["completed_at"] is not None else None

    return wait_for(ended, 180, f"evaluation {evaluation_id} to end")


def output_lines(stack: Stack, http: requests.Session, file_id: str) -> list[dict[str, Any]]:
    response = http.get(f"{stack.url}/v1/files/{file_id}/content")
    assert response.status_code == 200
    return [json.loads(text) for text in response.text.splitlines()]


def test_fill_mask_metrics_equal_an_independent_computation(stack: Stack, http: requests.Session,
                                                            tiny_models: dict[str, Path], receiver: Receiver) -> None:
    fill_mask = pipeline("fill-mask", model=str(tiny_models["fill-mask"]), device="cpu")
    top_k, seed = 4, 11
    predictions = [fill_mask(text, top_k=10) for text in MASKED]
    # Labels at rank 1, 3, beyond top_k, 2 and 1 of the pipeline's own predictions.
    labels = [predictions[i][rank]["token_str"] for i, rank in enumerate([0, 2, 7, 1, 0])]
    lines = [{"text": text, "label": label} for text, label in zip(MASKED, labels, strict=True)]
    lines += [{"text": text} for text in PLAIN]
    evaluation = evaluate(stack, http, "fill-mask", lines, config={"top_k": top_k, "seed": seed},
                          webhook=receiver.on("/eval", "200"), metadata={"set": "smoke"})
    assert evaluation["status"] in ("queued", "running") and evaluation["result_counts"]["total"] == len(lines)

    done = wait_ended(stack, http, evaluation["id"])
    assert done["status"] == "succeeded" and done["result_counts"] == {"total": 8, "done": 8, "failed": 0}
    ranks = []
    for label, predicted in zip(labels, predictions, strict=True):
        words = [p["token_str"] for p in predicted[:top_k]]
        ranks.append(words.index(label) + 1 if label in words else None)
    scores = [expected_scores(tiny_models["fill-mask"], text, line, seed) for line, text in
              enumerate(PLAIN, start=len(MASKED) + 1)]
    expected = {
        "accuracy": sum(rank == 1 for rank in ranks) / len(ranks),
        "top_k_accuracy": sum(rank is not None for rank in ranks) / len(ranks),
        "mrr": sum(1 / rank for rank in ranks if rank) / len(ranks),
        "pseudo_perplexity": math.exp(-sum(s["pseudo_log_likelihood"] for s in scores) / sum(s["tokens"]
                                                                                            for s in scores)),
        "mlm_loss": sum(s["mlm_nll"] for s in scores) / sum(s["mlm_masked"] for s in scores),
    }
    assert ranks == [1, 3, None, 2, 1]
    assert done["metrics"] == pytest.approx(expected, rel=1e-4)

    scored = output_lines(stack, http, done["output_file_id"])
    assert [line["line"] for line in scored] == list(range(1, 9))
    assert [line["rank"] for line in scored[:5]] == ranks
    assert all(line["predictions"] == [p["token_str"] for p in predicted[:top_k]]
               for line, predicted in zip(scored[:5], predictions, strict=True))
    assert [line["tokens"] for line in scored[5:]] == [s["tokens"] for s in scores]

    [delivery] = wait_for(lambda: receiver.requests_to("/eval") or None, 30, "the evaluation.completed webhook")
    event = Webhook(http.get(f"{stack.url}/v1/webhooks/secret").json()["secret"]).verify(delivery.body,
                                                                                       delivery.headers)
    assert event["type"] == "evaluation.completed" and event["data"]["metrics"] == done["metrics"]
    assert event["data"]["metadata"] == {"set": "smoke"}
    assert http.get(f"{stack.url}/v1/evaluations").json()["data"][0]["id"] == evaluation["id"]
    assert all(job["id"] not in {evaluation["id"]} for job in http.get(f"{stack.url}/v1/jobs").json()["data"])


def test_question_answering_exact_match_and_f1_equal_the_references(stack: Stack, http: requests.Session) -> None:
    lines, golds = [], []
    for i, case in enumerate(QA_CASES):
        answer = case["output"]["answer"]
        gold = [answer] if i % 3 == 0 else [f"the {answer} itself", "nothing of it"] if i % 3 == 1 else ["other"]
        golds.append(gold)
        lines.append({"id": f"q{i}", "question": case["question"], "context": case["context"],
                      "answers": {"text": gold, "answer_start": [0] * len(gold)}})
    done = wait_ended(stack, http, evaluate(stack, http, "question-answering", lines)["id"])
    pairs = [best(case["output"]["answer"], gold) for case, gold in zip(QA_CASES, golds, strict=True)]
    assert done["status"] == "succeeded"
    assert done["metrics"] == pytest.approx({"exact_match": 100 * sum(e for e, _ in pairs) / len(pairs),
                                             "f1": 100 * sum(f for _, f in pairs) / len(pairs)})
    scored = output_lines(stack, http, done["output_file_id"])
    assert [line["id"] for line in scored] == [f"q{i}" for i in range(len(QA_CASES))]
    assert [line["prediction"] for line in scored] == [case["output"]["answer"] for case in QA_CASES]


def test_a_bad_line_fails_the_evaluation_naming_it(stack: Stack, http: requests.Session) -> None:
    lines: list[Any] = [{"text": "Paris is the [MASK] of France.", "label": "capital"},
                        {"text": "Paris [MASK] the [MASK] of France.", "label": "capital"},
                        {"text": "Paris is the [MASK] of France.", "label": "notaword"},
                        {"text": "Plain text has no [MASK]."},
                        "{broken",
                        {"text": "x", "answer": "y"}]
    failed = evaluate(stack, http, "fill-mask", lines)
    assert failed["status"] == "failed" and failed["result_counts"]["total"] == 0
    named = failed["error"]["lines"]
    assert [line["line"] for line in named] == [2, 3, 4, 5, 6]
    assert [line["param"] for line in named] == ["text", "label", "text", None, "answer"]
    qa = evaluate(stack, http, "question-answering", [{"question": "Who?", "context": "Ada wrote it."}])
    assert qa["status"] == "failed" and qa["error"]["lines"][0]["param"] == "answers"
    wrong_model = http.post(f"{stack.url}/v1/evaluations", json={
        "task": "fill-mask", "model": "bert-large", "metrics": ["f1"], "input_file_id": "file-none"})
    assert wrong_model.status_code == 422
    assert {tuple(d["loc"]) for d in wrong_model.json()["error"]["details"]} == {("metrics",)}
    other_model = http.post(f"{stack.url}/v1/evaluations", json={"task": "fill-mask", "model": "bert-large",
                                                                 "input_file_id": "file-none"})
    assert {tuple(d["loc"]) for d in other_model.json()["error"]["details"]} == {("model",), ("input_file_id",)}


def test_a_sample_and_a_cancel(stack: Stack, http: requests.Session) -> None:
    lines = [{"text": MASKED[i % len(MASKED)], "label": "the"} for i in range(300)]
    sampled = wait_ended(stack, http, evaluate(stack, http, "fill-mask", lines, config={"max_samples": 7})["id"])
    assert sampled["result_counts"]["total"] == 7 and len(output_lines(stack, http, sampled["output_file_id"])) == 7
    evaluation = evaluate(stack, http, "fill-mask", lines * 6)
    canceled = http.post(f"{stack.url}/v1/evaluations/{evaluation['id']}/cancel").json()
    assert canceled["status"] == "canceled"
    done = wait_ended(stack, http, evaluation["id"])
    counts, scored = done["result_counts"], output_lines(stack, http, done["output_file_id"])
    assert done["status"] == "canceled" and counts["done"] == counts["total"] == 1800 and counts["failed"] > 0
    assert len(scored) == 1800 and sum("error" in line for line in scored) == counts["failed"]


def test_the_cli_prints_the_metrics(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "examples.jsonl"
    source.write_text("".join(json.dumps({"text": text, "label": "the"}) + "\n" for text in MASKED))
    key, out = stack.new_key("cli"), tmp_path / "scored.jsonl"
    env = {**os.environ, "DISTILQ_URL": stack.url, "DISTILQ_API_KEY": key, "COLUMNS": "120"}
    refused = subprocess.run([sys.executable, "-m", "distilq.cli", "eval", "fill-mask", str(source), "--delete-files"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "--delete-files needs --output" in refused.stderr
    run = subprocess.run([sys.executable, "-m", "distilq.cli", "eval", "fill-mask", str(source), "--wait",
                          "--top-k", "3", "--output", str(out), "--delete-files"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    evaluation = json.loads(run.stdout)
    assert evaluation["status"] == "succeeded" and evaluation["config"]["top_k"] == 3
    assert "5/5" in run.stderr
    scored = [json.loads(text) for text in out.read_text().splitlines()]
    assert [line["text"] for line in scored] == MASKED and all(len(line["predictions"]) == 3 for line in scored)
    assert stack.client(key).get(f"{stack.url}/v1/files").json()["data"] == []  # the input and output deleted
    for name in ("accuracy", "top_k_accuracy", "mrr"):
        assert f"{name}" in run.stderr and f"{evaluation['metrics'][name]:.4f}" in run.stderr
    listed = subprocess.run([sys.executable, "-m", "distilq.cli", "eval", "list"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert json.loads(listed.stdout)[0]["id"] == evaluation["id"]

    started = subprocess.run([sys.executable, "-m", "distilq.cli", "eval", "fill-mask", str(source)], env=env,
                             capture_output=True, text=True, timeout=60)  # no --wait: created, and left to run
    assert started.returncode == 0 and json.loads(started.stdout)["status"] in ("queued", "running", "succeeded")
    waited = subprocess.run([sys.executable, "-m", "distilq.cli", "eval", "wait", json.loads(started.stdout)["id"],
                             "--output", str(out), "--delete-files"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert waited.returncode == 0 and json.loads(waited.stdout)["status"] == "succeeded", waited.stderr
    assert [json.loads(text)["text"] for text in out.read_text().splitlines()] == MASKED and "mrr" in waited.stderr
    assert stack.client(key).get(f"{stack.url}/v1/files").json()["data"] == []

    source.write_text("{broken\n")
    broken = subprocess.run([sys.executable, "-m", "distilq.cli", "eval", "fill-mask", str(source), "--output",
                             str(out), "--delete-files"], env=env, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1 and json.loads(broken.stdout)["status"] == "failed"
    assert "distilq: line 1: " in broken.stderr, broken.stderr  # the bad line named
    assert stack.client(key).get(f"{stack.url}/v1/files").json()["data"] == []  # its input deleted too
