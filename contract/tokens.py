"""Token-level rules that the API (checking a request) and the worker (running it) must apply identically.

Both hold the model's own `tokenizers.Tokenizer`: the API loads it without transformers, the worker takes
`backend_tokenizer` from its transformers tokenizer. A job's inputs are tokenized once: the API's check encodes
them anyway, and stores what the worker needs of them with the job (`pack_token_ids`: fill-mask's ids; for a QA
pair, `pack_qa_pairs`), stamped with its tokenizer's fingerprint; the worker uses them when its own tokenizer has
the same fingerprint, and tokenizes otherwise.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import struct
import sys
from array import array
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

#: [CLS] question [SEP] context [SEP]
QA_SPECIAL_TOKENS = 3
#: [CLS] text [SEP]: the tokenizer takes a stride of at most max_seq_len less these, and refuses a QA request with a
#: longer one whatever its inputs (the 4.x pipeline fails it).
SEQUENCE_SPECIAL_TOKENS = 2
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


def stride_problem(max_seq_len: int, doc_stride: int) -> str | None:
    """Why the tokenizer would refuse `doc_stride` at `max_seq_len` for any pair; None when it takes it."""
    if doc_stride > max_seq_len - SEQUENCE_SPECIAL_TOKENS:
        return (f"doc_stride ({doc_stride}) must be at most max_seq_len ({max_seq_len}) - {SEQUENCE_SPECIAL_TOKENS}: "
                f"the tokenizer takes no longer stride")
    return None


def qa_chunk_count(question_tokens: int, context_tokens: int, max_seq_len: int, doc_stride: int) -> int:
    """How many overlapping chunks a question/context pair becomes; raises ValueError where the tokenizer
    would fail (it panics rather than raising, so this must be checked before it runs)."""
    problem = stride_problem(max_seq_len, doc_stride)
    if problem is not None:
        raise ValueError(problem)
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


#: Bytes of a tokenizer's fingerprint at the head of packed token ids.
FINGERPRINT_BYTES = 8


def tokenizer_fingerprint(tokenizer: Tokenizer) -> bytes:
    """Names the tokenizer's whole configuration (vocabulary, normaliser, pre-tokeniser, post-processor), its
    truncation and padding left out: two tokenizers of one fingerprint give the same ids."""
    from tokenizers import Tokenizer

    plain = Tokenizer.from_str(tokenizer.to_str())
    plain.no_truncation()
    plain.no_padding()
    return hashlib.sha256(plain.to_str().encode("utf-8")).digest()[:FINGERPRINT_BYTES]


#: Packed ids are 16-bit where every id of the job fits (a BERT vocabulary's do), else 32-bit.
_WIDTHS = {2: "H", 4: "I"}


def pack_token_ids(fingerprint: bytes, ids: list[list[int]]) -> bytes:
    """The token ids of a job's inputs as the job row stores them: the fingerprint, a byte giving the width of
    the integers that follow (2 or 4), then those integers, unsigned, little-endian — the number of inputs, each
    input's length, every id."""
    header = [len(ids), *map(len, ids)]
    count = len(header) + sum(header[1:])
    # One struct call over the numbers as they come, 16-bit unless one does not fit: half the time of finding the
    # largest first and filling an array (an input of 104 tokens: 4.3 µs against 8.4).
    for width, code in _WIDTHS.items():
        try:
            packed = struct.pack(f"<{count}{code}", *header, *itertools.chain.from_iterable(ids))
        except struct.error:  # a number past 65,535: 32-bit then
            continue
        return fingerprint + bytes([width]) + packed
    raise ValueError("a token id or a length does not fit 32 bits")


def unpack_token_ids(packed: bytes | None, fingerprint: bytes, inputs: int) -> list[list[int]] | None:
    """The ids `pack_token_ids` stored for a job of `inputs` inputs; None when there are none, or they were made
    by a tokenizer of another fingerprint (the model changed between the API's check and the run), or they do
    not hold `inputs` inputs."""
    arrays = unpack_token_arrays(packed, fingerprint, inputs)
    return None if arrays is None else [one.tolist() for one in arrays]


def unpack_token_arrays(packed: bytes | None, fingerprint: bytes, inputs: int) -> list[array[int]] | None:
    """As `unpack_token_ids`, each list an `array` of its integers: a slice is one copy in C, and an integer
    becomes a Python object only when read (a QA pair's offsets and words are read at its few answers' ends)."""
    if packed is None or len(packed) <= FINGERPRINT_BYTES or bytes(packed[:FINGERPRINT_BYTES]) != fingerprint:
        return None
    typecode = _WIDTHS.get(packed[FINGERPRINT_BYTES])
    body = bytes(packed[FINGERPRINT_BYTES + 1:])
    if typecode is None or len(body) % int(packed[FINGERPRINT_BYTES]):
        return None
    numbers = array(typecode)
    numbers.frombytes(body)
    if sys.byteorder == "big":
        numbers.byteswap()
    if not numbers or numbers[0] != inputs or len(numbers) < 1 + inputs:
        return None
    lengths = numbers[1:1 + inputs].tolist()
    if sum(lengths) != len(numbers) - 1 - inputs:
        return None
    lists, start = [], 1 + inputs
    for length in lengths:
        lists.append(numbers[start:start + length])
        start += length
    return lists


#: The lists `pack_qa_pairs` stores per question/context pair.
QA_LISTS_PER_PAIR = 5


def pack_qa_pairs(fingerprint: bytes, questions: list[Encoding], contexts: list[Encoding]) -> bytes:
    """What the worker needs of a job's question/context pairs (each text encoded alone, without special tokens)
    to cut them into chunks and read answers without its tokenizer, packed (`pack_token_ids`): per pair the
    question's ids, the context's ids, its tokens' character starts and ends, and their word indices plus one (0: a
    token of no word). A pair's encoding holds the same ids, offsets and words: BERT's tokenizer normalises and
    splits each sequence on its own."""
    lists: list[list[int]] = []
    for question, context in zip(questions, contexts, strict=True):
        starts, ends = (list(column) for column in zip(*context.offsets, strict=True)) if context.ids else ([], [])
        words = [0 if word is None else word + 1 for word in context.word_ids]
        lists += [question.ids, context.ids, starts, ends, words]
    return pack_token_ids(fingerprint, lists)
