"""Fill-mask's strings without a decode call per candidate: `token_str` (`tokenizer.decode([token])`) and
`sequence` (`tokenizer.decode(ids with the mask replaced, skip_special_tokens=…)`), exactly as those calls give them.

The WordPiece decoder of the `tokenizers` library turns each token into a piece of its own — the first token as
it is, a later one with its `##` prefix dropped or else a space before it, each piece then cleaned (" ." → "."…)
on its own — and joins the pieces. So a sequence is the pieces before the mask, the candidate's piece, and the
pieces after it, each looked up in a table built once per model. Tokenizers with another decoder (or a candidate
that is itself dropped from the sequence: a special token, or padding, which the pipeline filters out) take the
decode call, as before.
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
        self.special = {i for i, added in backend.get_added_tokens_decoder().items() if added.special}
        self.fast = decoder.get("type") == "WordPiece"
        prefix: str = decoder.get("prefix", "##")
        clean = _cleaned if decoder.get("cleanup", True) else (lambda piece: piece)
        #: Each token's piece as the first one of a text, and as any later one.
        self.first = [clean(token) for token in tokens]
        self.later = [clean(token[len(prefix):] if token.startswith(prefix) else " " + token) for token in tokens]
        #: transformers' own clean-up on top (`clean_up_tokenization_spaces`), when the tokenizer asks for it.
        self.python_cleanup = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))
        #: FillMaskPipeline drops the padding token from a sequence before it decodes it.
        self.pad_id: int | None = tokenizer.pad_token_id
        self._token_str: dict[int, str] = {}

    def _finish(self, text: str) -> str:
        return self.tokenizer.clean_up_tokenization(text) if self.python_cleanup else text

    def token_str(self, token: int) -> str:
        """`tokenizer.decode([token])`, remembered."""
        text = self._token_str.get(token)
        if text is None:
            text = self.tokenizer.decode([token])
            self._token_str[token] = text
        return text

    def sequences(self, ids: Sequence[int], position: int, candidates: Sequence[int],
                  skip_special_tokens: bool) -> list[str]:
        """`tokenizer.decode(ids with ids[position] replaced by each candidate, skip_special_tokens)`."""
        if not self.fast:
            return [self._decode_with(ids, position, c, skip_special_tokens) for c in candidates]
        dropped = self.special if skip_special_tokens else ()
        before = [t for t in ids[:position] if t not in dropped]
        after = [t for t in ids[position + 1:] if t not in dropped]
        head = (self.first[before[0]] + "".join(self.later[t] for t in before[1:])) if before else ""
        tail = "".join(self.later[t] for t in after)
        texts = []
        for candidate in candidates:
            if candidate in dropped or candidate == self.pad_id:  # rare enough for the decode call
                texts.append(self._decode_with(ids, position, candidate, skip_special_tokens))
                continue
            piece = self.later[candidate] if before else self.first[candidate]
            texts.append(self._finish(head + piece + tail))
        return texts

    def _decode_with(self, ids: Sequence[int], position: int, candidate: int, skip_special_tokens: bool) -> str:
        tokens = list(ids)
        tokens[position] = candidate
        return str(self.tokenizer.decode([t for t in tokens if t != self.pad_id],
                                         skip_special_tokens=skip_special_tokens))
