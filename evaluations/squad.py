"""SQuAD v1.1's answer metrics, as its official evaluation script defines them: answers normalised (lower case,
punctuation and the articles a/an/the removed, whitespace collapsed), exact match of the normalised strings, F1 of
their token bags, each the best over the gold answers."""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


def f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:  # also when either side normalises to nothing (v1.1 scores that 0, unlike v2.0)
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def best(prediction: str, golds: list[str]) -> tuple[float, float]:
    """(exact match, F1) of `prediction`, each the best over `golds`, as fractions."""
    return (max(float(exact_match(prediction, gold)) for gold in golds),
            max(f1(prediction, gold) for gold in golds))
