"""SQuAD v1.1 answer metrics against the reference values of tests/fixtures/squad_reference.json (transformers
4.57.6's squad_metrics, made by make_squad_reference.py), and v1.1's own rule where v2.0 differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluations import Totals, score
from evaluations.squad import best, f1

CASES = json.loads((Path(__file__).parents[2] / "fixtures" / "squad_reference.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=lambda case: repr(case["prediction"])[:40])
def test_exact_match_and_f1_equal_the_reference(case: dict[str, object]) -> None:
    exact, overlap = best(str(case["prediction"]), list(case["answers"]))  # type: ignore[call-overload]
    assert exact == case["exact_match"]
    assert overlap == pytest.approx(case["f1"], abs=1e-12)


def test_the_metrics_of_a_file_are_the_means_in_percent() -> None:
    totals = Totals()
    for line, case in enumerate(CASES, start=1):
        totals.add(score("question-answering", line, {"question": ["q"]}, {"answers": {"text": case["answers"]}},
                         [{"answer": case["prediction"], "score": 0.5}], None))
    metrics = totals.metrics(["exact_match", "f1"])
    assert metrics["exact_match"] == pytest.approx(100 * sum(c["exact_match"] for c in CASES) / len(CASES))
    assert metrics["f1"] == pytest.approx(100 * sum(c["f1"] for c in CASES) / len(CASES))


def test_a_gold_that_normalises_to_nothing_scores_zero_f1_as_in_v1_1() -> None:
    assert f1("the", "The.") == 0.0 and best("a", ["the"]) == (1.0, 0.0)
