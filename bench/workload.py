"""The benchmark's workloads, each the same on every run: fill-mask sentences of 6–60 words with one mask; QA
questions of about 10 words over contexts of 80–450 words. "synthetic" draws words from a made-up lexicon (long
words of rare pieces: more tokens per word than English); "english" cuts them from real English prose
(`english.txt`, encyclopedic paragraphs written for this bench)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

_COMMON = (
    "the of and to in is was for on that with as by at from his her it an were are which this be or has had "
    "not but first one their its new after who they have two been also other more time year city people state "
    "world during most about into over years many school before through when some between later would under "
    "river music team war family government history company book film game church house water system number "
    "season station party group part county center population university building village area name life "
    "known called made became began built published released located played won led served moved used found "
    "Paris London Berlin France Germany England America Europe river valley mountain north south east west"
).split()
_SYLLABLES = ("ka", "ri", "to", "men", "sa", "lo", "ven", "dor", "el", "an", "tri", "ber", "gon", "ul", "es",
              "ith", "ro", "na", "mi", "thal", "qu", "ar", "ion", "ste", "pa", "lin", "ov", "ex", "um", "bra")


def _lexicon() -> list[str]:
    rng = random.Random(7)
    words = list(dict.fromkeys(_COMMON))
    seen = set(words)
    while len(words) < 20_000:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
        word = word.capitalize() if rng.random() < 0.15 else word
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


LEXICON = _lexicon()


@dataclass(frozen=True)
class Workload:
    fill_mask: list[str]
    qa: list[tuple[str, str]]


def _words(rng: random.Random, count: int) -> list[str]:
    # Zipf-like: common words often, the long tail rarely.
    return [LEXICON[min(int(rng.paretovariate(1.1)) - 1, len(LEXICON) - 1)] if rng.random() < 0.7
            else rng.choice(LEXICON) for _ in range(count)]


def make_workload(fill_mask_jobs: int, qa_jobs: int, seed: int = 2026) -> Workload:
    rng = random.Random(seed)
    sentences = []
    for _ in range(fill_mask_jobs):
        words = _words(rng, rng.randint(6, 60))
        words[rng.randrange(len(words))] = "[MASK]"
        sentences.append(" ".join(words) + ".")
    pairs = []
    for _ in range(qa_jobs):
        question = " ".join(_words(rng, rng.randint(8, 12))) + "?"
        words = _words(rng, rng.randint(80, 450))
        for i in range(12, len(words), rng.randint(10, 20)):
            words[i] += "."
        pairs.append((question, " ".join(words) + "."))
    return Workload(sentences, pairs)


ENGLISH = Path(__file__).with_name("english.txt")


def english_words() -> list[str]:
    """The prose's words and numbers, each once, in the order they first appear."""
    return list(dict.fromkeys(re.findall(r"\w+", ENGLISH.read_text(encoding="utf-8"))))


def make_english_workload(fill_mask_jobs: int, qa_jobs: int, seed: int = 2026) -> Workload:
    """The same shapes from real prose: a fill-mask input is a run of the text's words from a sentence's start, cut
    to 6–60 words, one word masked; a QA context is a run of whole sentences of 80–450 words, its question a
    clause of one of its sentences."""
    rng = random.Random(seed)
    sentences = [sentence.split() for paragraph in ENGLISH.read_text(encoding="utf-8").split("\n\n")
                 for sentence in re.split(r"(?<=[.?!])\s+(?=[A-Z])", paragraph.strip())]
    words = [word for sentence in sentences for word in sentence]
    starts = [0]
    for sentence in sentences[:-1]:
        starts.append(starts[-1] + len(sentence))

    def run_of(first: int, count: int) -> list[str]:
        return [words[(first + i) % len(words)] for i in range(count)]

    fill_mask = []
    for _ in range(fill_mask_jobs):
        chosen = run_of(rng.choice(starts), rng.randint(6, 60))
        at = rng.randrange(len(chosen))
        # The word's letters masked, its punctuation kept: "river," becomes "[MASK],".
        chosen[at] = re.sub(r"^(\W*).*?(\W*)$", r"\1[MASK]\2", chosen[at])
        fill_mask.append(" ".join(chosen))
    pairs = []
    for _ in range(qa_jobs):
        first, target = rng.randrange(len(sentences)), rng.randint(80, 450)
        context: list[list[str]] = []
        while sum(map(len, context)) < target:
            context.append(sentences[(first + len(context)) % len(sentences)])
        asked = rng.choice(context)
        clause = asked[: rng.randint(6, 11)]
        question = "What " + " ".join(clause).rstrip(".,;:") + "?"
        pairs.append((question, " ".join(word for sentence in context for word in sentence)))
    return Workload(fill_mask, pairs)
