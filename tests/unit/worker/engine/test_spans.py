"""Span scoring: the band against the pipeline's full product, and all chunks of a pass on the device against
one chunk at a time on the host (the pipeline's arithmetic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.engine.spans import best_spans, decode_spans, decode_spans_banded, read_spans, select_starts_ends


@pytest.mark.parametrize("seed", range(5))
def test_banded_span_scoring_equals_the_pipelines_outer_product(seed: int) -> None:
    """The same spans and scores as the T × T product, over chunk lengths, answer lengths, top-k and masks that
    leave fewer allowed spans than asked for (where the full product's zero-score spans decide)."""
    rng = np.random.default_rng(seed)
    for _ in range(200):
        length = int(rng.integers(2, 64))
        start = rng.random((1, length)).astype(np.float32)
        end = rng.random((1, length)).astype(np.float32)
        undesired = (rng.random((1, length)) < rng.uniform(0.05, 1.0)).astype(np.int64)
        start[undesired == 0] = 0.0
        end[undesired == 0] = 0.0
        topk, max_answer_len = int(rng.choice([1, 3, 12, 40])), int(rng.integers(1, 20))
        expected = decode_spans(start, end, topk, max_answer_len, undesired)
        actual = decode_spans_banded(start, end, topk, max_answer_len, undesired)
        for a, e in zip(actual, expected, strict=True):
            np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("max_answer_len", [1, 3, 30])
def test_a_chunk_of_exactly_k_candidate_spans_sorts_them_all(max_answer_len: int) -> None:
    """Where the pipeline asks for as many spans as a chunk of n tokens has (n², `top_k * 2 + 10` when aligning to
    words: top_k 27 of a chunk of 8 tokens), its `argpartition` raises ('kth out of bounds') and the job would fail;
    here every span comes back sorted, as the pipeline's own code does for one more asked."""
    rng = np.random.default_rng(0)
    for length in (3, 8, 14):
        start, end = rng.random((1, length)), rng.random((1, length))
        allowed = np.ones((1, length), dtype=np.int64)
        for decode in (decode_spans, decode_spans_banded):
            exact = decode(start, end, length * length, max_answer_len, allowed)
            for got, more in zip(exact, decode_spans(start, end, length * length + 1, max_answer_len, allowed),
                                 strict=True):
                np.testing.assert_array_equal(got, more)
        band = min(max_answer_len, length) * length  # the band's own size as k: all of it nonzero here
        for got, more in zip(decode_spans_banded(start, end, band, max_answer_len, allowed),
                             decode_spans(start, end, band, max_answer_len, allowed), strict=True):
            np.testing.assert_array_equal(got, more)


@pytest.mark.parametrize("seed", range(5))
def test_every_chunk_at_once_equals_each_chunk_on_the_host(seed: int) -> None:
    """Rows of different lengths padded to one, random logits and answer masks, k and max_answer_len from
    1 to past the row: the device's spans and "no answer" scores are the host's; a row it cannot decide (fewer
    spans above zero than asked for) is exactly one where the host's band says so."""
    rng = np.random.default_rng(seed)
    for _ in range(20):
        rows, longest = int(rng.integers(1, 9)), int(rng.integers(2, 48))
        lengths = rng.integers(2, longest + 1, size=rows)
        lengths[0] = longest
        start = torch.from_numpy(rng.normal(0, 3, (rows, longest)).astype(np.float32))
        end = torch.from_numpy(rng.normal(0, 3, (rows, longest)).astype(np.float32))
        real = torch.arange(longest)[None, :] < torch.from_numpy(lengths)[:, None]
        allowed = torch.from_numpy(rng.random((rows, longest)) < rng.uniform(0.05, 1.0)) & real
        allowed[:, 0] = True  # CLS
        k, max_answer_len = int(rng.choice([1, 3, 12, 40])), int(rng.integers(1, 20))
        table = best_spans(start, end, real, allowed, max_answer_len, k).numpy()
        for row in range(rows):
            n = int(lengths[row])
            mask = allowed[row, :n].numpy()
            host = select_starts_ends(start[row, :n].numpy(), end[row, :n].numpy(), mask, k, max_answer_len)
            [device] = read_spans(table[row:row + 1], [k])
            assert table[row, 0] == pytest.approx(host.null, rel=1e-5, abs=1e-12)
            if device is None:
                assert np.count_nonzero(np.array(host.scores) > 0) < k or len(host.scores) < k
                continue
            assert (device.starts, device.ends) == (host.starts, host.ends)
            np.testing.assert_allclose(device.scores, host.scores, rtol=1e-5)
