"""An example's output scored against its gold, and the metrics of many examples.

Fill-mask: a labelled example is ranked — where its label's token is among the top_k predictions (accuracy: first;
top_k_accuracy: anywhere; mrr: the mean of 1/rank, 0 when absent: MRR@k). A plain-text example carries its
pseudo-log-likelihood (each token masked in turn, Salazar et al. 2020) and its MLM negative log-likelihood at the
seeded masking (`masking.py`), both computed by the worker's engine: pseudo_perplexity = exp(−Σ PLL / Σ tokens) and
mlm_loss = Σ NLL / Σ masked tokens, over every plain line. Question answering: SQuAD v1.1's exact match and F1
(`squad.py`), in 0–100 as its official script reports them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from evaluations import squad


def score(task: str, line: int, example: dict[str, Any], gold: dict[str, Any], output: Any,
          error: dict[str, Any] | None) -> dict[str, Any]:
    """The output file's line for one example: what it was asked, what the model said, and its scores (or the
    error of an example that failed). `example` is the job's input, `gold` what the file said to expect (the
    job's metadata), `output` its output (None when it failed)."""
    if output is None:
        return {"line": line, "error": error or {"code": "failed", "message": "the example did not run"}}
    if task == "question-answering":
        answer = output[0]
        golds = gold["answers"]["text"]
        exact, f1 = squad.best(answer["answer"], golds)
        return {"line": line, **({"id": gold["id"]} if gold.get("id") is not None else {}),
                "question": example["question"][0], "prediction": answer["answer"], "score": answer["score"],
                "answers": golds, "exact_match": 100 * exact, "f1": 100 * f1}
    text = example["input_string"][0]
    if "label" in gold:
        predictions = output[0]
        rank = next((i + 1 for i, p in enumerate(predictions) if p["token"] == gold["label_id"]), None)
        return {"line": line, "text": text, "label": gold["label"],
                "predictions": [p["token_str"] for p in predictions], "rank": rank,
                "reciprocal_rank": 1 / rank if rank else 0.0}
    scored = output[0]
    return {"line": line, "text": text, "tokens": scored["tokens"],
            "pseudo_log_likelihood": scored["pseudo_log_likelihood"],
            "pseudo_perplexity": math.exp(-scored["pseudo_log_likelihood"] / scored["tokens"]),
            "masked": scored["mlm_masked"], "mlm_loss": scored["mlm_nll"] / scored["mlm_masked"]}


@dataclass
class Totals:
    """Sums over scored lines, from which the metrics are computed."""

    ranked: int = 0
    top_1: int = 0
    top_k: int = 0
    reciprocal_ranks: float = 0.0
    pseudo_log_likelihood: float = 0.0
    tokens: int = 0
    mlm_nll: float = 0.0
    mlm_masked: int = 0
    answered: int = 0
    exact_match: float = 0.0
    f1: float = 0.0
    failed: int = 0

    def add(self, scored: dict[str, Any]) -> None:
        if "error" in scored:
            self.failed += 1
        elif "rank" in scored:
            self.ranked += 1
            self.top_1 += scored["rank"] == 1
            self.top_k += scored["rank"] is not None
            self.reciprocal_ranks += scored["reciprocal_rank"]
        elif "pseudo_log_likelihood" in scored:
            self.pseudo_log_likelihood += scored["pseudo_log_likelihood"]
            self.tokens += scored["tokens"]
            self.mlm_nll += scored["mlm_loss"] * scored["masked"]
            self.mlm_masked += scored["masked"]
        else:
            self.answered += 1
            self.exact_match += scored["exact_match"]
            self.f1 += scored["f1"]

    def metrics(self, names: list[str]) -> dict[str, float | None]:
        """The named metrics; None for one no example could give (e.g. accuracy of a file without labels)."""
        values: dict[str, float | None] = {
            "accuracy": self.top_1 / self.ranked if self.ranked else None,
            "top_k_accuracy": self.top_k / self.ranked if self.ranked else None,
            "mrr": self.reciprocal_ranks / self.ranked if self.ranked else None,
            "pseudo_perplexity": math.exp(-self.pseudo_log_likelihood / self.tokens) if self.tokens else None,
            "mlm_loss": self.mlm_nll / self.mlm_masked if self.mlm_masked else None,
            "exact_match": self.exact_match / self.answered if self.answered else None,
            "f1": self.f1 / self.answered if self.answered else None,
        }
        return {name: values[name] for name in names}
