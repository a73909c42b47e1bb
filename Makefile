# Two commands: `make run` (set up and start everything) and `make test` (set up and check everything).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Most test time is spent waiting on emulated rate limits and latency, not CPU: four workers
# (pytest-xdist) keep two cores busy. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 4

.PHONY: setup run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/integration-sync up

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy integration_sync integration_sync_tests

unit: setup
	$(BIN)/pytest -n $(PYTEST_WORKERS)

test: lint typecheck unit

bench: setup
	$(BIN)/python -m integration_sync_tests.bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
