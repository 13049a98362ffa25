"""Sub-batch planning: every sequence once, bounds respected, padding only to each sub-batch's longest."""

from __future__ import annotations

import random

import pytest

from worker.engine.batching import pad, plan_batches


@pytest.mark.parametrize("seed", range(5))
def test_plan_covers_every_index_within_bounds(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(3, 400) for _ in range(200)]
    batches = plan_batches(lengths, max_rows=16, max_tokens=2048)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 16
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 2048


def test_sorting_keeps_padding_low() -> None:
    lengths = [10, 300, 12, 290, 11, 310]
    batches = plan_batches(lengths, max_rows=3, max_tokens=10_000)
    assert [sorted(lengths[i] for i in b) for b in batches] == [[10, 11, 12], [290, 300, 310]]


def test_a_row_longer_than_the_token_bound_still_runs_alone() -> None:
    assert plan_batches([600, 5], max_rows=8, max_tokens=512) == [[1], [0]]


def test_pad_builds_ids_and_mask() -> None:
    ids, mask = pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
