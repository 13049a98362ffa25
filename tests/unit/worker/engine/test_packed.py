"""The packed encoder against transformers' own padded forward, and what it spares: padding in the linear layers,
and the last layer's work away from the kept tokens."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch.nn import functional
from transformers import AutoModelForMaskedLM, AutoTokenizer

from worker.engine.packed import TokenRows, _attend_per_row, encode, pack

TEXTS = [
    "Paris is the [MASK] of France.",
    "A much longer sentence, with [MASK] words and punctuation, that makes the others pad a lot.",
    "[MASK]",
    "Two [MASK] in one [MASK].",
]


@pytest.fixture(scope="module")
def loaded(tiny_models: dict[str, Path]) -> tuple[object, object]:
    directory = tiny_models["fill-mask"]
    return AutoTokenizer.from_pretrained(directory), AutoModelForMaskedLM.from_pretrained(directory).eval()


@torch.inference_mode()
def test_packed_states_equal_the_padded_forward(loaded: tuple[object, object]) -> None:
    tokenizer, model = loaded
    padded = tokenizer(TEXTS, padding=True, return_tensors="pt")  # type: ignore[operator]
    reference = model.distilbert(**padded).last_hidden_state[padded["attention_mask"].bool()]  # type: ignore[attr-defined]
    sequences = tokenizer(TEXTS)["input_ids"]  # type: ignore[operator]
    states = encode(model.distilbert, pack(TokenRows.of(sequences), list(range(len(TEXTS)))))  # type: ignore[attr-defined]
    assert states.shape == reference.shape
    torch.testing.assert_close(states, reference, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_rows_in_any_order_give_the_same_states(loaded: tuple[object, object]) -> None:
    tokenizer, model = loaded
    sequences = tokenizer(TEXTS)["input_ids"]  # type: ignore[operator]
    forward = encode(model.distilbert, pack(TokenRows.of(sequences), [0, 1, 2, 3]))  # type: ignore[attr-defined]
    backward_pass = pack(TokenRows.of(sequences), [3, 2, 1, 0])
    backward = encode(model.distilbert, backward_pass)  # type: ignore[attr-defined]
    offsets = backward_pass.offsets
    reordered = torch.cat([backward[offsets[3 - i] : offsets[4 - i]] for i in range(4)])
    torch.testing.assert_close(reordered, forward, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_kept_tokens_equal_the_full_pass_and_only_they_reach_the_last_feed_forward(
    loaded: tuple[object, object],
) -> None:
    tokenizer, model = loaded
    sequences = tokenizer(TEXTS)["input_ids"]  # type: ignore[operator]
    batch = pack(TokenRows.of(sequences), list(range(len(TEXTS))))
    keep = torch.nonzero(batch.input_ids == tokenizer.mask_token_id).squeeze(1)  # type: ignore[attr-defined]
    full = encode(model.distilbert, batch)  # type: ignore[attr-defined]

    rows_seen: dict[str, int] = {}
    layers = model.distilbert.transformer.layer  # type: ignore[attr-defined]
    hooks = [
        layers[0].attention.q_lin.register_forward_hook(
            lambda _m, args, _out: rows_seen.__setitem__("first q_lin", args[0].shape[0])),
        layers[-1].ffn.lin1.register_forward_hook(
            lambda _m, args, _out: rows_seen.__setitem__("last lin1", args[0].shape[0])),
    ]
    try:
        kept = encode(model.distilbert, batch, keep)  # type: ignore[attr-defined]
    finally:
        for hook in hooks:
            hook.remove()
    torch.testing.assert_close(kept, full[keep], atol=1e-5, rtol=1e-5)
    # The linear layers see the real tokens only (no padding), the last feed-forward the 5 masks only.
    assert rows_seen == {"first q_lin": sum(len(ids) for ids in sequences), "last lin1": 5}


@torch.inference_mode()
def test_rows_of_one_length_take_the_unpadded_path_and_equal_the_forward(loaded: tuple[object, object]) -> None:
    """QA's chunks of a long context are all max_seq_len long: such a pass is its own padded layout, run without
    scatter, gather or mask, and equal to transformers' forward; the same rows beside a shorter one (the padded
    path) give the same states."""
    tokenizer, model = loaded
    first = tokenizer(TEXTS[1])["input_ids"]  # type: ignore[operator]
    middle = first[1:-1]
    sequences = [first, [first[0], *middle[::-1], first[-1]], [first[0], *middle[1:], middle[0], first[-1]]]
    batch = pack(TokenRows.of(sequences), [0, 1, 2])
    assert batch.uniform
    reference = model.distilbert(torch.tensor(sequences)).last_hidden_state  # type: ignore[attr-defined]
    reference = reference.reshape(-1, reference.shape[-1])
    states = encode(model.distilbert, batch)  # type: ignore[attr-defined]
    torch.testing.assert_close(states, reference, atol=1e-5, rtol=1e-5)
    beside = pack(TokenRows.of([*sequences, sequences[0][:3]]), [0, 1, 2, 3])
    assert not beside.uniform
    mixed = encode(model.distilbert, beside)  # type: ignore[attr-defined]
    torch.testing.assert_close(mixed[: len(states)], states, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_attention_row_by_row_equals_the_padded_pass(loaded: tuple[object, object]) -> None:
    """The CPU's attention (each row alone, no padding) and the GPU's (the pass padded, one call) give the same
    states, with and without kept tokens; and both equal transformers' padded forward."""
    tokenizer, model = loaded
    sequences = tokenizer(TEXTS)["input_ids"]  # type: ignore[operator]
    batch = pack(TokenRows.of(sequences), [2, 0, 3, 1])
    assert not batch.uniform and batch.attention_padded("padded") and not batch.attention_padded("per-row")
    assert not batch.attention_padded("varlen")
    padded = encode(model.distilbert, batch)  # type: ignore[attr-defined]
    per_row = encode(model.distilbert, batch, attention="per-row")  # type: ignore[attr-defined]
    torch.testing.assert_close(per_row, padded, atol=1e-5, rtol=1e-5)
    keep = torch.nonzero(batch.input_ids == tokenizer.mask_token_id).squeeze(1)  # type: ignore[attr-defined]
    kept = encode(model.distilbert, batch, keep, attention="per-row")  # type: ignore[attr-defined]
    torch.testing.assert_close(kept, padded[keep], atol=1e-5, rtol=1e-5)
    offsets = batch.offsets
    for place, row in enumerate(batch.rows):
        alone = model.distilbert(torch.tensor([sequences[row]])).last_hidden_state[0]  # type: ignore[attr-defined]
        torch.testing.assert_close(per_row[offsets[place]:offsets[place + 1]], alone, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_rows_of_one_length_attend_in_one_call_exactly_as_each_alone(loaded: tuple[object, object]) -> None:
    """Row by row, the consecutive rows of one length share an attention call: each row's attention outputs are bit
    for bit those of its own call; and the pass's states still equal the padded pass's."""
    tokenizer, model = loaded
    sequences = tokenizer(TEXTS)["input_ids"]  # type: ignore[operator]
    first = sequences[0]
    sequences += [[first[0], token, *first[2:]] for token in (7, 8)]  # two more rows of the first one's length
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    batch = pack(TokenRows.of(sequences), order)
    assert len(batch.runs) == len(order) - 2 and (3, len(first)) in batch.runs
    heads, dim = 2, 32
    query, key, value = (torch.randn(len(batch.input_ids), dim) for _ in range(3))
    together = _attend_per_row(query, key, value, batch, heads, 0.25)
    offsets = batch.offsets
    for start, end in itertools.pairwise(offsets):
        q, k, v = (t[start:end].view(1, end - start, heads, -1).transpose(1, 2) for t in (query, key, value))
        alone = functional.scaled_dot_product_attention(q, k, v, scale=0.25).transpose(1, 2).reshape(end - start, -1)
        assert torch.equal(together[start:end], alone)
    torch.testing.assert_close(encode(model.distilbert, batch, attention="per-row"),  # type: ignore[attr-defined]
                               encode(model.distilbert, batch), atol=1e-5, rtol=1e-5)  # type: ignore[attr-defined]


def test_the_counters_count_the_attention_each_layout_computes() -> None:
    """Padded: rows × longest slots and rows × longest² pairs; row by row (or rows of one length): the real ones."""
    from worker.engine.phases import Phases

    padded, real = Phases(), Phases()
    padded.count_pass([3, 5], padded=True)
    real.count_pass([3, 5], padded=False)
    assert (padded.counts["attention_slots"], padded.counts["attention_pairs"]) == (10, 50)
    assert (real.counts["attention_slots"], real.counts["attention_pairs"]) == (8, 34)
    assert padded.counts["real_tokens"] == real.counts["real_tokens"] == 8


@torch.inference_mode()
def test_each_layout_makes_the_attention_calls_it_says(loaded: tuple[object, object],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Row by row: one unmasked call per row and layer; padded: one masked call per layer; rows of one length: one
    unmasked call per layer, whichever was asked."""
    from torch.nn import functional

    tokenizer, model = loaded
    calls: list[bool] = []  # whether each call had a mask
    attend = functional.scaled_dot_product_attention

    def counted(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(kwargs.get("attn_mask") is not None)
        return attend(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(functional, "scaled_dot_product_attention", counted)
    layers = model.config.n_layers  # type: ignore[attr-defined]
    sequences = tokenizer(TEXTS)["input_ids"]  # type: ignore[operator]
    mixed, same = pack(TokenRows.of(sequences), [0, 1, 2, 3]), pack(TokenRows.of([sequences[0]] * 3), [0, 1, 2])
    for batch, attention, expected in ((mixed, "per-row", [False] * 4 * layers), (mixed, "padded", [True] * layers),
                                       (same, "per-row", [False] * layers), (same, "padded", [False] * layers)):
        calls.clear()
        encode(model.distilbert, batch, attention=attention)  # type: ignore[attr-defined]
        assert calls == expected, (attention, batch.lengths)


def test_rows_as_one_array_keep_each_row_and_pickle_as_bytes() -> None:
    """`TokenRows`, what passes are cut from and how a batch's ids cross to a device process: each row as it was,
    a pass of any rows in their order, and a pickle that holds no object per id."""
    import pickle

    sequences = [[2, 17, 4, 3], [2, 3], [2, 9, 9, 9, 9, 30000, 3], [2, 4, 3]]
    rows = TokenRows.of(sequences)
    assert len(rows) == 4 and rows.lengths() == [4, 2, 7, 3]
    assert [rows[i].tolist() for i in range(4)] == sequences
    batch = pack(rows, [2, 0, 3])
    assert batch.rows == [2, 0, 3] and batch.lengths == [7, 4, 3]
    assert batch.input_ids.tolist() == [*sequences[2], *sequences[0], *sequences[3]]
    assert batch.positions.tolist() == [*range(7), *range(4), *range(3)]
    read = pickle.loads(pickle.dumps(rows))
    assert read.ids.tolist() == [token for sequence in sequences for token in sequence]
    assert read.starts.tolist() == [0, 4, 6, 13, 16]


@torch.inference_mode()
def test_varlen_attention_hands_flash_attention_the_packed_rows_and_equals_the_padded_pass(
    loaded: tuple[object, object], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A GPU's layout in half precision: one FlashAttention call a layer on the packed tokens as (tokens, heads,
    head_dim), told where each row starts and the longest row. torch has no CPU kernel for it, so a reference of its
    contract (each row of `starts` attending over its own keys) stands in here; the GPU bench's agreement against
    float32 (`bench.run --modes h`, float32 padded) checks the kernel itself."""
    from worker.engine import packed

    tokenizer, model = loaded
    calls: list[tuple[tuple[int, ...], list[int], int]] = []

    def flash_contract(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, starts: torch.Tensor,
                       longest: int, scale: float) -> torch.Tensor:
        assert starts.dtype == torch.int32 and query.shape == key.shape == value.shape
        calls.append((tuple(query.shape), starts.tolist(), longest))
        rows = [functional.scaled_dot_product_attention(*(t[start:end].transpose(0, 1) for t in (query, key, value)),
                                                        scale=scale).transpose(0, 1)
                for start, end in itertools.pairwise(starts.tolist())]
        return torch.cat(rows)

    monkeypatch.setattr(packed, "flash_varlen", flash_contract)
    sequences = tokenizer(TEXTS)["input_ids"]  # type: ignore[operator]
    batch = pack(TokenRows.of(sequences), [2, 0, 3, 1])
    padded = encode(model.distilbert, batch)  # type: ignore[attr-defined]
    varlen = encode(model.distilbert, batch, attention="varlen")  # type: ignore[attr-defined]
    torch.testing.assert_close(varlen, padded, atol=1e-5, rtol=1e-5)
    config = model.config  # type: ignore[attr-defined]
    tokens = len(batch.input_ids)
    assert calls == [((tokens, config.n_heads, config.dim // config.n_heads), batch.offsets, batch.longest)] * \
        config.n_layers
    keep = torch.nonzero(batch.input_ids == tokenizer.mask_token_id).squeeze(1)  # type: ignore[attr-defined]
    kept = encode(model.distilbert, batch, keep, attention="varlen")  # type: ignore[attr-defined]
    torch.testing.assert_close(kept, padded[keep], atol=1e-5, rtol=1e-5)
    assert batch.starts.tolist() == batch.offsets


def test_the_flash_attention_call_matches_torch_s_schema() -> None:
    """The call itself, on meta tensors (torch's shape functions, no kernel): the arguments as the op takes them,
    and the output the packed tokens' shape."""
    from worker.engine.packed import flash_varlen

    tokens = torch.empty(10, 12, 64, dtype=torch.float16, device="meta")
    starts = torch.empty(3, dtype=torch.int32, device="meta")
    assert flash_varlen(tokens, tokens, tokens, starts, 6, 0.125).shape == (10, 12, 64)
