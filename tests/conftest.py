"""Fixtures shared by every suite: the tiny DistilBERT checkpoints, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.tiny_model import build

    return build(tmp_path_factory.mktemp("tiny-distilbert"))
