"""The layout holds what ARCHITECTURE.md says (import-linter enforces the layers; these check the rest): the API's
side loads no torch at run time, the wheel ships the product only, a job's status is written in one module, and
no two public classes share a name."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The product's packages (what the wheel ships), top layer first.
PRODUCT = ["distilq", "api", "worker", "store", "migrations", "webhooks", "evaluations", "contract", "models", "core"]


def _modules(*packages: str) -> list[str]:
    names = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("modules", [
    # Everything the API image runs: the API, and `beat` and the webhook sender, which run from it too.
    [m for m in _modules("api", "store", "webhooks", "evaluations", "contract", "models", "core") if m != "api.wsgi"],
    ["worker.sweeper", "worker.events", "worker.app", "worker.batcher", "distilq.cli", "distilq.stack"],
])
def test_importing_loads_no_torch_or_transformers(modules: list[str]) -> None:
    """import-linter sees the imports written down; this also catches one made at import time by a library."""
    code = (f"import sys; import {', '.join(modules)}; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"


def test_the_wheel_ships_the_product_only(tmp_path: Path) -> None:
    """Built from a copy of the tracked files, so the checkout gets no build folders."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    source = tmp_path / "source"
    for name in tracked:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("distilq-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert top == set(PRODUCT)


def _classes() -> list[tuple[str, str]]:
    found = []
    for module in _modules(*PRODUCT):
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = ROOT / module.replace(".", "/") / "__init__.py"
        for node in ast.parse(path.read_text("utf-8")).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                found.append((node.name, module))
    return found


def test_no_two_public_classes_share_a_name() -> None:
    by_name: dict[str, list[str]] = {}
    for name, module in _classes():
        by_name.setdefault(name, []).append(module)
    assert {name: where for name, where in by_name.items() if len(where) > 1} == {}


def test_a_jobs_status_is_written_in_one_module() -> None:
    """Every UPDATE of the jobs table and every new job row is written in the job store."""
    writers = set()
    for module in _modules(*PRODUCT):
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("update", "Job")
                    and (node.func.id == "Job" or (node.args and isinstance(node.args[0], ast.Name)
                                                   and node.args[0].id == "Job"))):
                writers.add(module)
            # The table itself (Core statements built once: INSERT … SELECT, the claim, the write-back).
            if (isinstance(node, ast.Attribute) and node.attr == "__table__" and isinstance(node.value, ast.Name)
                    and node.value.id == "Job"):
                writers.add(module)
    assert writers == {"store.jobs"}
