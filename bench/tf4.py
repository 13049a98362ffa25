"""Running one of the bench's scripts (`tf4_qa.py`, `tf4_outputs.py`) in transformers 4.57.6's own venv, which
`make bench` makes (`DISTILQ_BENCH_TF4_PYTHON`): the request as a JSON file, the answer as JSON on its stdout."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any


def run_script(python: str, script: str, request: dict[str, Any]) -> Any:
    """What `script` (a file beside this one) printed, run by `python` on `request`; the request's file removed."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(request, file)
    try:
        done = subprocess.run([python, str(Path(__file__).with_name(script)), file.name], capture_output=True,
                              text=True, check=True)
    finally:
        os.unlink(file.name)
    return json.loads(done.stdout)
