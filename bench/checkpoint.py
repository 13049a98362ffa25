"""A checkpoint of distilbert-base's exact shape (6 layers, dim 768, 12 heads, FFN 3072, vocab 28996) with
random weights: its cost per token is the real model's. The tokenizer is a cased WordPiece of 28996 entries
over the benchmark's lexicon, so that words split into pieces as they would; the English workload's checkpoint
(`build(..., words=english_words())`) holds every word of its prose too, as bert-base-cased holds common English
words whole.

`build(..., shape="tiny")` writes the same tokenizer over the tiny test checkpoint's shape (2 layers, dim 32): a
small encoder, while the API's and the worker's work per input — tokens per word, sequence lengths — is the base
checkpoint's (~40 tokens a bench sentence, where the test suite's tiny checkpoint, `tests/tiny_model.py`, spells
the bench's made-up words letter by letter: ~104). Its 28,996-entry head is then most of the model's time on a CPU,
and transformers' pipeline computes it at every token: see BENCHMARKS.md (session 26) before reading its ratios."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import (
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForQuestionAnswering,
    DistilBertTokenizerFast,
)

from bench.workload import LEXICON

VOCAB_SIZE = 28996
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocab(words: Sequence[str] = ()) -> list[str]:
    letters = {c for word in (*LEXICON, *words) for c in word} | set(".,;:!?'\"-()")
    chars = sorted(letters)
    vocab = [*SPECIALS, *chars, *("##" + c for c in chars), *dict.fromkeys(w for w in words if w not in letters)]
    # Leave out every seventh word, so that those split into pieces, as rarer words do in BERT's vocabulary.
    whole = set(words)
    vocab += [w for i, w in enumerate(LEXICON) if i % 7 != 3 and w not in whole]
    pieces = sorted({"##" + w[i:] for w in LEXICON for i in range(1, len(w) - 1)})
    seen = set(vocab)
    for piece in pieces:
        if len(vocab) >= VOCAB_SIZE:
            break
        if piece not in seen:
            vocab.append(piece)
            seen.add(piece)
    filler = 0
    while len(vocab) < VOCAB_SIZE:
        vocab.append(f"[unused{filler}]")
        filler += 1
    return vocab[:VOCAB_SIZE]


def _tokenizer(words: Sequence[str]) -> DistilBertTokenizerFast:
    ids = {token: i for i, token in enumerate(_vocab(words))}
    backend = Tokenizer(WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=None)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    return DistilBertTokenizerFast(tokenizer_object=backend, do_lower_case=False, model_max_length=512,
                                   unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                                   mask_token="[MASK]")


#: The model's shape (dim, layers, heads, FFN width): distilbert-base's, or the tiny test checkpoint's
#: (`tests/tiny_model.py`).
SHAPES = {"base": (768, 6, 12, 3072), "tiny": (32, 2, 2, 64)}


def build(out_dir: Path, words: Sequence[str] = (), shape: str = "base") -> dict[str, Path]:
    """Writes (once) out_dir/fill-mask and out_dir/question-answering, their vocabulary holding `words` whole, the
    model of `shape` (a key of SHAPES); returns {task: directory}."""
    dirs = {"fill-mask": out_dir / "fill-mask", "question-answering": out_dir / "question-answering"}
    if all((d / "model.safetensors").exists() for d in dirs.values()):
        return dirs
    tokenizer = _tokenizer(words)
    dim, layers, heads, hidden = SHAPES[shape]
    config = DistilBertConfig(vocab_size=VOCAB_SIZE, dim=dim, n_layers=layers, n_heads=heads, hidden_dim=hidden,
                              max_position_embeddings=512)
    torch.manual_seed(0)
    for task, cls in (("fill-mask", DistilBertForMaskedLM), ("question-answering", DistilBertForQuestionAnswering)):
        model = cls(config).eval()
        model.save_pretrained(dirs[task])
        tokenizer.save_pretrained(dirs[task])
    return dirs
