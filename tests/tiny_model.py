"""Builds a tiny DistilBERT checkpoint: a real cased WordPiece tokenizer and the real architecture with small,
deterministic random weights. The suite loads it through the same `from_pretrained` path as the hub models.

The weights come from NumPy's seeded generator, not from transformers' initialisers, so the same files come
out under any transformers version: the QA reference outputs (made with transformers 4.57.6) stay valid.

    python -m tests.tiny_model OUT_DIR    # writes OUT_DIR/fill-mask and OUT_DIR/question-answering
"""

from __future__ import annotations

import collections
import hashlib
import re
import sys
from pathlib import Path

import numpy as np

SEED = 20261123
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

#: Text the vocabulary is drawn from: what the tests send, and non-ASCII text so offsets are exercised.
CORPUS = """
Paris is the capital of France. Today is a beautiful day! My name is Wolfgang and I live in Berlin.
The quick brown fox jumps over the lazy dog. Where do I live? What is my name? Who wrote the book?
The Eiffel Tower was built in 1889 for the World Fair and is one of the most visited monuments in the world.
Machine learning models answer questions about a context by pointing at the span that holds the answer.
München liegt in Bayern. Zürich, Genève and Köln are cities; naïve café owners serve crème brûlée.
東京は日本の首都です。 Москва — столица России. The river flows north through the valley of the old kingdom.
DistilBERT is a small, fast, cheap and light Transformer model trained by distilling BERT base.
It has 40% less parameters than bert-base-uncased and runs 60% faster while preserving over 95% of
the performance as measured on the GLUE language understanding benchmark. Hello world, good morning.
"""


def build_vocab(corpus: str = CORPUS) -> list[str]:
    words = re.findall(r"\w+|[^\w\s]", corpus)
    chars = sorted({c for w in words for c in w})
    counts = collections.Counter(words)
    vocab = list(SPECIAL_TOKENS)
    vocab += chars
    vocab += ["##" + c for c in chars]
    vocab += sorted(w for w in counts if len(w) > 1)
    # A few sub-word pieces so that WordPiece splits some words into several tokens.
    vocab += ["##ing", "##ed", "##s", "##er", "##ly", "##tion", "un", "re"]
    return list(dict.fromkeys(vocab))  # each once, first place kept


def _tokenizer(vocab: list[str]):  # type: ignore[no-untyped-def]
    """The same pipeline as bert-base-cased's tokenizer.json, over our vocabulary."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import DistilBertTokenizerFast

    ids = {token: i for i, token in enumerate(vocab)}
    backend = Tokenizer(WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=False
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    return DistilBertTokenizerFast(
        tokenizer_object=backend, do_lower_case=False, model_max_length=512, unk_token="[UNK]",
        sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
    )


def _config(vocab_size: int, dim: int = 32, n_layers: int = 2, hidden_dim: int = 64):  # type: ignore[no-untyped-def]
    from transformers import DistilBertConfig

    return DistilBertConfig(
        vocab_size=vocab_size, dim=dim, n_layers=n_layers, n_heads=2, hidden_dim=hidden_dim,
        max_position_embeddings=512,
        dropout=0.0, attention_dropout=0.0, qa_dropout=0.0, seq_classif_dropout=0.0, pad_token_id=0,
    )


def _fill_deterministically(model, seed: int, weight_std: float = 0.3) -> None:  # type: ignore[no-untyped-def]
    import torch

    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
            shape = tuple(param.shape)
            if "layer_norm" in name.lower() and name.endswith("weight"):
                values = 1.0 + 0.1 * rng.standard_normal(shape)
            elif name.endswith("bias"):
                values = 0.1 * rng.standard_normal(shape)
            else:
                values = weight_std * rng.standard_normal(shape)
            param.copy_(torch.from_numpy(values.astype(np.float32)))


def weights_digest(model) -> str:  # type: ignore[no-untyped-def]
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(param.detach().cpu().numpy().astype(np.float32).tobytes())
    return digest.hexdigest()


def build(
    out_dir: Path, dim: int = 32, n_layers: int = 2, hidden_dim: int = 64, weight_std: float = 0.3
) -> dict[str, Path]:
    """Writes both checkpoints under out_dir; returns {task: directory}. The defaults are the checkpoint the QA
    reference was made with; the chaos suite asks for a wider one, whose batches last long enough to interrupt."""
    from transformers import DistilBertForMaskedLM, DistilBertForQuestionAnswering

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab()
    tokenizer = _tokenizer(vocab)
    dirs = {}
    for task, cls, seed in (
        ("fill-mask", DistilBertForMaskedLM, SEED),
        ("question-answering", DistilBertForQuestionAnswering, SEED + 1),
    ):
        model = cls(_config(len(vocab), dim, n_layers, hidden_dim))
        _fill_deterministically(model, seed, weight_std)
        model.eval()
        target = out_dir / task
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        dirs[task] = target
    return dirs


if __name__ == "__main__":
    for task, path in build(Path(sys.argv[1])).items():
        print(task, path)
