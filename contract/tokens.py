"""Token-level rules that the API (checking a request) and the worker (running it) must apply identically.

Both hold the model's own `tokenizers.Tokenizer`: the API loads it without transformers, the worker takes
`backend_tokenizer` from its transformers tokenizer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

#: [CLS] question [SEP] context [SEP]
QA_SPECIAL_TOKENS = 3
#: A pair costs its chunks × max_seq_len tokens of forward passes; more than this is refused. As much as 64 chunks
#: at the default max_seq_len of 384 — and then as many chunks as that budget holds at a smaller max_seq_len.
MAX_QA_TOKENS_PER_INPUT = 64 * 384
#: Bytes a fill-mask prediction costs in the output besides its `sequence` (score, token, token_str, keys).
PREDICTION_OVERHEAD_BYTES = 96


def fill_mask_output_bytes(text_chars: int, masks: int, top_k: int) -> int:
    """About how many bytes of output one fill-mask input asks for: `top_k` predictions per mask, each carrying
    the whole sequence."""
    return masks * top_k * (text_chars + PREDICTION_OVERHEAD_BYTES)


def target_ids(tokenizer: Tokenizer, targets: list[str]) -> list[int]:
    """FillMaskPipeline.get_target_ids: a target in the vocabulary is its id, otherwise the first token of
    it; targets that tokenize to nothing are dropped; duplicates removed in `set` order, as the pipeline does."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    ids: list[int] = []
    for target in targets:
        token_id = vocab.get(target)
        if token_id is None:
            pieces = tokenizer.encode(target, add_special_tokens=False).ids
            if not pieces:
                continue
            token_id = pieces[0]
        ids.append(token_id)
    return list(set(ids))


def qa_chunk_count(question_tokens: int, context_tokens: int, max_seq_len: int, doc_stride: int) -> int:
    """How many overlapping chunks a question/context pair becomes; raises ValueError where the tokenizer
    would fail (it panics rather than raising, so this must be checked before it runs)."""
    room = max_seq_len - question_tokens - QA_SPECIAL_TOKENS
    if question_tokens + context_tokens + QA_SPECIAL_TOKENS <= max_seq_len:
        return 1
    if room <= 0:
        raise ValueError(
            f"the question has {question_tokens} tokens, which leaves no room for the context in "
            f"max_seq_len={max_seq_len}"
        )
    if doc_stride >= room:
        raise ValueError(
            f"doc_stride ({doc_stride}) must be smaller than the room left for the context in each chunk "
            f"(max_seq_len {max_seq_len} - {question_tokens} question tokens - {QA_SPECIAL_TOKENS} = {room})"
        )
    return 1 + math.ceil((context_tokens - room) / (room - doc_stride))
