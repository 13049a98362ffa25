"""The bench's workloads: the same on every run, in the shapes they promise."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bench.workload import Workload, make_english_workload, make_workload


@pytest.mark.parametrize("make", [make_workload, make_english_workload])
def test_a_workload_is_the_same_on_every_run_and_has_its_shapes(make: Callable[[int, int], Workload]) -> None:
    workload = make(300, 40)
    assert workload == make(300, 40)
    assert len(workload.fill_mask) == 300 and len(workload.qa) == 40
    assert all(sentence.count("[MASK]") == 1 and 6 <= len(sentence.split()) <= 60 for sentence in workload.fill_mask)
    # A context is whole sentences: it may pass 450 words by the last one's length.
    assert all(80 <= len(context.split()) <= 520 and question.endswith("?") for question, context in workload.qa)


def test_the_english_workload_is_cut_from_the_prose() -> None:
    """Every word of a fill-mask input but the masked one, and every QA context, come from english.txt as written."""
    from bench.workload import ENGLISH

    prose = " ".join(ENGLISH.read_text(encoding="utf-8").split())
    workload = make_english_workload(100, 20)
    for sentence in workload.fill_mask:
        before, _, after = sentence.partition("[MASK]")
        assert before.rsplit(" ", 1)[0] in prose and after.split(" ", 1)[-1] in prose
    # A context may wrap around from the last paragraph to the first; the others are runs of the prose.
    assert sum(context in prose for _, context in workload.qa) >= 15
