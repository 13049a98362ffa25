"""`softmax_top_k` gives what `logits.softmax(-1).topk(k)` gives: the same tokens in the same order, the same
probabilities to float32 rounding — for vocabularies with and without a partial last block, k small and large,
rows in slices or all at once, and logits spread wide enough that most exponentials would be subnormal."""

from __future__ import annotations

import pytest
import torch

from worker.engine.vocab_top_k import BLOCK, softmax_top_k


@pytest.mark.parametrize("vocabulary", [300, BLOCK * 44, 28996, 30522])
@pytest.mark.parametrize("k", [1, 5, 12, 100])
@pytest.mark.parametrize("rows_per_slice", [None, 32])
def test_equals_softmax_then_top_k(vocabulary: int, k: int, rows_per_slice: int | None) -> None:
    generator = torch.Generator().manual_seed(vocabulary + k)
    logits = torch.randn(70, vocabulary, generator=generator) * 3
    logits[:10] *= 40  # exp(logit - max) far below float32's normal range for most of these rows
    expected_values, expected_indices = logits.softmax(dim=-1).topk(k)
    values, indices = softmax_top_k(logits, k, rows_per_slice)
    torch.testing.assert_close(values, expected_values, rtol=1e-5, atol=1e-6)
    # Below float32's normal range probabilities lose their digits and tie (0 the most), and topk's order among ties
    # is its own: the tokens are compared above it.
    ranked = expected_values >= torch.finfo(torch.float32).tiny
    assert torch.equal(indices[ranked], expected_indices[ranked])
    assert ranked[10:].all()


def test_the_best_token_in_the_partial_last_block_is_found() -> None:
    logits = torch.zeros(2, 28996)
    logits[0, 28995] = 9.0  # past the last whole block of 659
    logits[1, 3] = 9.0
    _, indices = softmax_top_k(logits, 1)
    assert indices[:, 0].tolist() == [28995, 3]


def test_no_rows() -> None:
    values, indices = softmax_top_k(torch.zeros(0, 28996), 5, 32)
    assert values.shape == (0, 5) and indices.shape == (0, 5)
