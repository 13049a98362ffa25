"""Which tokens the MLM loss masks: a fixed, seeded 15 % of each line's tokens, so that the loss of a model on a
file is the same number on every run, every worker and every resumption."""

from __future__ import annotations

import random

#: BERT's share of masked tokens.
MLM_RATE = 0.15


def mlm_positions(tokens: int, seed: int, line: int) -> list[int]:
    """Indices (0-based, among the line's `tokens` real tokens, ascending) masked together for the MLM loss:
    round(15 %) of them, at least one, drawn by a generator seeded with the evaluation's seed and the line number.
    The masked tokens are replaced by the mask token only (no 80/10/10 replacement: this is evaluation)."""
    count = max(1, round(MLM_RATE * tokens))
    return sorted(random.Random(f"{seed}:{line}").sample(range(tokens), count))
