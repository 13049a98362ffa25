"""Evaluation jobs: how good the served model is on a user's data. Its public face: the scoring of one example's
output against its gold (`scoring.score`), the metrics of many (`scoring.Totals`), the SQuAD v1.1 answer metrics
(`squad`) and the seeded masking of the MLM loss (`masking`), which the worker applies."""

from evaluations.masking import mlm_positions
from evaluations.scoring import Totals, score

__all__ = ["Totals", "mlm_positions", "score"]
