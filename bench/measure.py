"""What one benchmark mode measured, and the figures reported for it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Result:
    mode: str
    label: str
    sequences: int
    real_tokens: int
    padded_tokens: int
    wall_s: float
    latencies_s: list[float]
    phases_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Floating-point work of the mode's forward passes (`bench/flops.py`); None where not counted.
    flops: float | None = None
    #: (c): inputs a second with the engine's stages overlapped as the worker runs them (`bench.modes._overlapped`).
    overlapped_per_s: float | None = None
    #: ... and whether its outputs equalled those of the stages run in turn.
    overlapped_equal: bool | None = None

    @property
    def sequences_per_s(self) -> float:
        return self.sequences / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return self.real_tokens / self.wall_s

    @property
    def padding_ratio(self) -> float:
        """Tokens computed per real token (1.0: no padding)."""
        return self.padded_tokens / self.real_tokens if self.real_tokens else 1.0

    @property
    def outside_model_us(self) -> float | None:
        """Microseconds per input the engine spent outside the encoder's forward passes and the MLM head's
        product (tokenize, select, post-process, packing, copies, Python): the CPU work a GPU does not speed up.
        None for modes without phases."""
        if not self.phases_s:
            return None
        model = self.phases_s.get("forward", 0.0) + self.phases_s.get("head", 0.0)
        return (self.wall_s - model) / self.sequences * 1e6

    @property
    def host_us(self) -> float | None:
        """Of `outside_model_us`, what is left without the device's kernels over the vocabulary or the span table
        (phase "select": fill-mask's softmax and top-k, QA's span scores), which a GPU runs on the device: the
        host's own work per input — tokenizing, planning and packing passes, copies back, the outputs' Python."""
        outside = self.outside_model_us
        if outside is None:
            return None
        return outside - self.phases_s.get("select", 0.0) / self.sequences * 1e6

    @property
    def flops_per_s(self) -> float | None:
        return self.flops / self.wall_s if self.flops is not None else None

    def bracketed(self, after: Result, between: str) -> Result:
        """This mode's result with its run again after `between`: the two runs' rate together (their mean wall), and
        each run's rate in a note. A shared machine's speed moves by half and more over minutes (BENCHMARKS.md,
        session 21); a ratio against one run made before minutes of end-to-end modes reads the machine's phase."""
        merged = Result(self.mode, self.label, self.sequences, self.real_tokens, self.padded_tokens,
                        (self.wall_s + after.wall_s) / 2, self.latencies_s + after.latencies_s, dict(self.phases_s),
                        list(self.notes), self.flops)
        merged.notes.append(f"run before and after {between}: {self.sequences_per_s:.2f} and "
                            f"{after.sequences_per_s:.2f} seq/s; the table's rate is the two together")
        return merged

    def latency_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000)

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode, "label": self.label, "sequences": self.sequences, "wall_s": round(self.wall_s, 3),
            "sequences_per_s": round(self.sequences_per_s, 3), "real_tokens_per_s": round(self.tokens_per_s, 1),
            "padding_ratio": round(self.padding_ratio, 3),
            "p50_ms": round(self.latency_ms(50), 1), "p95_ms": round(self.latency_ms(95), 1),
            "p99_ms": round(self.latency_ms(99), 1),
            "phases_s": {k: round(v, 3) for k, v in self.phases_s.items()}, "notes": self.notes,
            "flops": self.flops, "flops_per_s": self.flops_per_s, "outside_model_us_per_input": self.outside_model_us,
            "host_us_per_input": self.host_us, "overlapped_per_s": self.overlapped_per_s,
            "overlapped_equal": self.overlapped_equal,
        }
