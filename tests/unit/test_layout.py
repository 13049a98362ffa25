"""The API's install stays free of torch and transformers: importing every API module (and `beat` and the webhook
sender, which run from the API image) must not load them."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("modules", [
    "api, api.jobs, api.health, api.errors, api.deps, api.model_inputs, api.submission, api.waiting, api.validation",
    "worker.sweeper, worker.events, worker.webhook_sender, worker.tasks, distilq.cli, distilq.embedded",
])
def test_importing_loads_no_torch_or_transformers(modules: str) -> None:
    code = f"import sys; import {modules}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
