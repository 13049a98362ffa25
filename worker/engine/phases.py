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
        #: Rows and real tokens put through the model (the linear layers compute exactly those), and the padded
        #: rows × longest slots attention computed.
        self.counts: dict[str, int] = collections.defaultdict(int)

    def count(self, rows: int, real_tokens: int, attention_slots: int) -> None:
        self.counts["rows"] += rows
        self.counts["real_tokens"] += real_tokens
        self.counts["attention_slots"] += attention_slots

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - started

    def reset(self) -> tuple[dict[str, float], dict[str, int]]:
        taken: tuple[dict[str, float], dict[str, int]] = (dict(self.seconds), dict(self.counts))
        self.seconds.clear()
        self.counts.clear()
        return taken
