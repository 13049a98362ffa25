"""Fill-mask's strings from the token tables equal the tokenizer's own decode, on the real cased WordPiece vocabulary
of the tiny checkpoint: random sequences, every special token (padding too), `##` pieces, punctuation that the decoder
cleans."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from worker.engine.detokenize import Detokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_models: dict[str, Path]) -> Any:
    return AutoTokenizer.from_pretrained(str(tiny_models["fill-mask"]))


def test_the_tables_are_built_for_a_wordpiece_decoder(tokenizer: Any) -> None:
    assert Detokenizer(tokenizer).fast


@pytest.mark.parametrize("skip_special_tokens", [True, False])
def test_sequences_equal_decode(tokenizer: Any, skip_special_tokens: bool) -> None:
    detokenizer = Detokenizer(tokenizer)
    rng = random.Random(7)
    vocab = tokenizer.backend_tokenizer.get_vocab_size()
    tricky = [tokenizer.convert_tokens_to_ids(t) for t in (".", ",", "?", "!", "'", "s", "t", "n", "do", "not")]
    specials = list(tokenizer.all_special_ids)
    for _ in range(400):
        length = rng.randint(1, 30)
        # Padding too, in the sequence and as a candidate: FillMaskPipeline leaves it out before it decodes.
        ids = [rng.choice(tricky + specials) if rng.random() < 0.3 else rng.randrange(vocab) for _ in range(length)]
        position = rng.randrange(len(ids))
        candidates = [rng.randrange(vocab) for _ in range(4)] + [rng.choice(tricky), rng.choice(specials),
                                                                  tokenizer.pad_token_id]
        expected = []
        for candidate in candidates:
            tokens = list(ids)
            tokens[position] = candidate
            expected.append(tokenizer.decode([t for t in tokens if t != tokenizer.pad_token_id],
                                             skip_special_tokens=skip_special_tokens))
        assert detokenizer.sequences(ids, position, candidates, skip_special_tokens) == expected, ids


def test_token_strings_equal_decode(tokenizer: Any) -> None:
    detokenizer = Detokenizer(tokenizer)
    for token in range(tokenizer.backend_tokenizer.get_vocab_size(with_added_tokens=True) + 2):  # and 2 past it
        assert detokenizer.token_str(token) == tokenizer.decode([token])
