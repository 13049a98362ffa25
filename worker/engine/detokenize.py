"""Fill-mask's strings without a decode call per candidate: `token_str` (`tokenizer.decode([token])`) and
`sequence` (`tokenizer.decode(ids with the mask replaced, skip_special_tokens=…)`), exactly as those calls give them.

The WordPiece decoder of the `tokenizers` library turns each token into a piece of its own — the first token as
it is, a later one with its `##` prefix dropped or else a space before it, each piece then cleaned (" ." → "."…)
on its own — and joins the pieces. So a sequence is the pieces before the mask, the candidate's piece, and the
pieces after it, each looked up in a table built once per model. A token the sequence leaves out — padding, which
FillMaskPipeline filters out before it decodes, in the input or as a candidate, and with skip_special_tokens every
special token — has an empty piece, and the first piece kept is its `first` one. Tokenizers with another decoder
take the decode call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

#: The `cleanup` of the tokenizers library's WordPiece decoder, in its order.
_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
            (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def _cleaned(piece: str) -> str:
    for dirty, clean in _CLEANUP:
        piece = piece.replace(dirty, clean)
    return piece


class Detokenizer:
    """`tokenizer` is a transformers fast tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        backend = tokenizer.backend_tokenizer
        decoder = json.loads(backend.to_str()).get("decoder") or {}
        vocab_size = backend.get_vocab_size(with_added_tokens=True)
        tokens = [backend.id_to_token(i) or "" for i in range(vocab_size)]
        #: Ids the decoder drops with skip_special_tokens=True: the added tokens marked special.
        self.special = frozenset(i for i, added in backend.get_added_tokens_decoder().items() if added.special)
        self.fast = decoder.get("type") == "WordPiece"
        prefix: str = decoder.get("prefix", "##")
        clean = _cleaned if decoder.get("cleanup", True) else (lambda piece: piece)
        #: Each token's piece as the first one of a text, and as any later one.
        self.first = [clean(token) for token in tokens]
        self.later = [clean(token[len(prefix):] if token.startswith(prefix) else " " + token) for token in tokens]
        #: FillMaskPipeline drops the padding token from a sequence before it decodes it.
        self.pad_id: int | None = tokenizer.pad_token_id
        #: Ids left out of a sequence, without and with skip_special_tokens.
        self.dropped = frozenset(() if self.pad_id is None else (self.pad_id,))
        self.skipped = self.special | self.dropped
        #: `later` with the pieces of those ids empty, without and with skip_special_tokens.
        self.later_kept = [("" if i in self.dropped else piece) for i, piece in enumerate(self.later)]
        self.later_skipping = [("" if i in self.skipped else piece) for i, piece in enumerate(self.later)]
        #: transformers' own clean-up on top (`clean_up_tokenization_spaces`), when the tokenizer asks for it.
        self.python_cleanup = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))
        #: `decode([token])` of every token, built once (0.1 s for 28996): a table, where a cache filled as tokens
        #: come up made the first batches pay a decode call for most candidates.
        self.token_strs: list[str] = [tokenizer.decode([token]) for token in range(vocab_size)]

    def _finish(self, text: str) -> str:
        return self.tokenizer.clean_up_tokenization(text) if self.python_cleanup else text

    def token_str(self, token: int) -> str:
        """`tokenizer.decode([token])` (a model may have more ids than its tokenizer: those are decoded)."""
        return self.token_strs[token] if token < len(self.token_strs) else str(self.tokenizer.decode([token]))

    def sequences(self, ids: Sequence[int], position: int, candidates: Sequence[int],
                  skip_special_tokens: bool) -> list[str]:
        """`tokenizer.decode(ids with ids[position] replaced by each candidate, skip_special_tokens)`."""
        if not self.fast:
            return [self._decode_with(ids, position, c, skip_special_tokens) for c in candidates]
        dropped = self.skipped if skip_special_tokens else self.dropped
        later = self.later_skipping if skip_special_tokens else self.later_kept
        # The first piece kept is its `first` one; every other piece is a lookup (C loops: map).
        start = self._first_kept(ids, 0, position, dropped)
        head = (self.first[ids[start]] + "".join(map(later.__getitem__, ids[start + 1: position]))
                if start < position else "")
        tail = "".join(map(later.__getitem__, ids[position + 1:]))
        texts = []
        for candidate in candidates:
            if candidate >= len(later):  # an id past the tokenizer's: decode
                texts.append(self._decode_with(ids, position, candidate, skip_special_tokens))
            elif start < position:
                texts.append(self._finish(head + later[candidate] + tail))
            elif candidate not in dropped:
                texts.append(self._finish(self.first[candidate] + tail))
            else:  # nothing kept before the mask, nor the candidate: the first piece is the tail's
                after = self._first_kept(ids, position + 1, len(ids), dropped)
                texts.append(self._finish(self.first[ids[after]] + "".join(map(later.__getitem__, ids[after + 1:]))
                                          if after < len(ids) else ""))
        return texts

    @staticmethod
    def _first_kept(ids: Sequence[int], start: int, end: int, dropped: frozenset[int]) -> int:
        """The first index in [start, end) whose id the sequence keeps, or `end`."""
        while start < end and ids[start] in dropped:
            start += 1
        return start

    def _decode_with(self, ids: Sequence[int], position: int, candidate: int, skip_special_tokens: bool) -> str:
        tokens = list(ids)
        tokens[position] = candidate
        return str(self.tokenizer.decode([t for t in tokens if t != self.pad_id],
                                         skip_special_tokens=skip_special_tokens))
