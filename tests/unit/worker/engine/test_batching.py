"""Sub-batch planning: every sequence once, bounds respected, and no more attention work than any other cut."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from worker.engine.batching import attention_width, plan_batches

WIDTH = attention_width(768, 3072)


def cost(lengths: list[int], batches: list[list[int]], overhead: int) -> float:
    return sum(len(b) * max(lengths[i] for i in b) ** 2 / WIDTH + overhead for b in batches)


@pytest.mark.parametrize("seed", range(5))
def test_plan_covers_every_index_within_bounds(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(3, 400) for _ in range(200)]
    batches = plan_batches(lengths, max_rows=16, max_tokens=2048)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 16
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 2048


@pytest.mark.parametrize("seed", range(40))
def test_plan_is_the_cheapest_cut_of_the_sorted_rows(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(5, 120) for _ in range(rng.randint(1, 9))]
    overhead = rng.choice([0, 1, 3, 32, 500])
    # Tight bounds, and bounds every row fits within at once (where one pass may be taken without the search).
    max_rows, max_tokens = (4, 300) if seed % 2 else (16, 5000)
    planned = cost(lengths, plan_batches(lengths, max_rows=max_rows, max_tokens=max_tokens,
                                         pass_overhead_tokens=overhead), overhead)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    cheapest = None
    for cuts in itertools.product([False, True], repeat=len(order) - 1):  # every contiguous split
        batches, current = [], [order[0]]
        for index, split in zip(order[1:], cuts, strict=True):
            if split:
                batches.append(current)
                current = []
            current.append(index)
        batches.append(current)
        if all(len(b) <= max_rows and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= max_tokens)
               for b in batches):
            c = cost(lengths, batches, overhead)
            cheapest = c if cheapest is None else min(cheapest, c)
    assert cheapest is not None and planned == pytest.approx(cheapest)


def test_short_rows_are_not_padded_to_long_ones() -> None:
    lengths = [10, 400, 12, 390, 11, 410]
    batches = plan_batches(lengths, max_rows=32, max_tokens=100_000)
    assert [sorted(lengths[i] for i in b) for b in batches] == [[10, 11, 12], [390, 400, 410]]


def test_when_attention_runs_row_by_row_padding_costs_nothing_and_the_bounds_alone_cut() -> None:
    lengths = [10, 400, 12, 390, 11, 410]
    assert [sorted(b) for b in plan_batches(lengths, max_rows=32, max_tokens=100_000, width=math.inf)] == [
        list(range(6))]
    bounded = plan_batches(lengths, max_rows=4, max_tokens=100_000, width=math.inf)
    assert len(bounded) == 2 and all(len(b) <= 4 for b in bounded)  # the fewest passes the bound allows


def test_short_rows_of_similar_lengths_share_one_pass() -> None:
    # Attention over 32 rows of ≤ 60 tokens costs less than one more pass: the linear layers see no padding.
    lengths = list(range(20, 52))
    assert [sorted(b) for b in plan_batches(lengths, max_rows=32, max_tokens=16_384)] == [list(range(32))]


def test_a_row_longer_than_the_token_bound_still_runs_alone() -> None:
    assert plan_batches([600, 5], max_rows=8, max_tokens=512) == [[1], [0]]


def least_cost(lengths: list[int], max_rows: int, max_tokens: int, overhead: int) -> float:
    """The cheapest cut of the sorted rows by the plain dynamic programme: every allowed last sub-batch, each step."""
    ordered = sorted(lengths)
    best = [0.0] + [float("inf")] * len(ordered)
    for j in range(1, len(ordered) + 1):
        for i in range(j - 1, -1, -1):
            rows, longest = j - i, ordered[j - 1]
            if rows > 1 and (rows > max_rows or rows * longest > max_tokens):
                break
            best[j] = min(best[j], best[i] + rows * longest * longest / WIDTH + overhead)
    return best[-1]


@pytest.mark.parametrize("seed", range(12))
def test_plan_is_the_cheapest_for_many_rows_of_few_lengths(seed: int) -> None:
    # Long runs of equal lengths, where the planner keeps its least between steps instead of searching again.
    rng = random.Random(seed)
    lengths = [rng.choice([8, 9, 30, 31, 64, 120, 121, 300]) for _ in range(rng.randint(20, 300))]
    max_rows, max_tokens = rng.choice([(8, 1000), (32, 16_384), (100, 4000), (512, 131_072)])
    overhead = rng.choice([0, 5, 32, 2048])
    planned = plan_batches(lengths, max_rows=max_rows, max_tokens=max_tokens, pass_overhead_tokens=overhead)
    assert sorted(i for batch in planned for i in batch) == list(range(len(lengths)))
    assert cost(lengths, planned, overhead) == pytest.approx(least_cost(lengths, max_rows, max_tokens, overhead))
