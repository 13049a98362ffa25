"""Wall time an engine spends in each phase (tokenize, forward, head, postprocess): how the benchmark tells
where the time goes. A few perf_counter calls per batch; always on."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        #: Rows and real tokens put through the model (the linear layers compute exactly those); the slots and
        #: (query, key) pairs attention computed (padded: rows × longest and rows × longest²); the tokens whose final
        #: state was kept (fill-mask: the masks). What the benchmark counts FLOPs from.
        self.counts: dict[str, int] = collections.defaultdict(int)

    def count_pass(self, lengths: list[int], padded: bool) -> None:
        """A pass of rows of these lengths, whose attention ran padded to the longest, or on the real tokens."""
        longest = max(lengths, default=0)
        self.counts["rows"] += len(lengths)
        self.counts["real_tokens"] += sum(lengths)
        self.counts["attention_slots"] += len(lengths) * longest if padded else sum(lengths)
        self.counts["attention_pairs"] += (len(lengths) * longest * longest if padded
                                           else sum(length * length for length in lengths))

    def count_kept(self, tokens: int) -> None:
        self.counts["kept_tokens"] += tokens

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - started

    def add(self, phase: str, seconds: float) -> None:
        """Time spent elsewhere on this batch's behalf (its tokenizing, prepared ahead in another thread)."""
        self.seconds[phase] += seconds

    def merge(self, seconds: dict[str, float], counts: dict[str, int]) -> None:
        """What another `Phases` reset (a device process's, for a batch of this engine's) added to this one."""
        for phase, value in seconds.items():
            self.seconds[phase] += value
        for name, count in counts.items():
            self.counts[name] += count

    def reset(self) -> tuple[dict[str, float], dict[str, int]]:
        taken: tuple[dict[str, float], dict[str, int]] = (dict(self.seconds), dict(self.counts))
        self.seconds.clear()
        self.counts.clear()
        return taken
