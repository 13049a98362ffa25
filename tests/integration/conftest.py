"""Every test under tests/integration starts real processes: mark them so `pytest -m integration` selects them.
The module-scoped fixtures many of them share: a client with a key of its own, a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.integration.receiver import Receiver, running_receiver
from tests.integration.stack import Stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def http(stack: Stack) -> requests.Session:
    """A client of the module's stack with a key of its own."""
    return stack.client(stack.new_key())


@pytest.fixture(scope="module")
def receiver(backend: tuple[str, str]) -> Iterator[Receiver]:
    """One receiver per backend, so that each backend's run sees only its own deliveries."""
    with running_receiver() as receiver:
        yield receiver
