"""The chaos suite (`pytest -m chaos`): real processes killed, crashed and stopped while jobs run."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos" in str(item.fspath):
            item.add_marker(pytest.mark.chaos)


@pytest.fixture(scope="session")
def slow_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny tokenizer on a wider encoder: a batch of long inputs takes about a second on a 2-core CPU.
    Weights scaled about 1/sqrt(dim), like a trained model's, so activations stay in a realistic range."""
    from tests.tiny_model import build

    return build(tmp_path_factory.mktemp("slow-distilbert"), dim=384, n_layers=4, hidden_dim=1536, weight_std=0.05)
