# Two commands: `make run` (set up and start everything) and `make test` (set up and check everything).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Most test time is spent waiting on emulated rate limits and latency, not CPU: four workers
# (pytest-xdist) keep two cores busy. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 4

.PHONY: setup run test lint typecheck unit bench clean php-cli

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

# php-cli (and php-curl, the agent's transport) run the shop module's tests (deploy/bitrix/): installed
# from Debian's packages when missing and we are root with apt-get; otherwise a warning, and those tests
# skip saying why.
php-cli:
	@{ command -v php >/dev/null && php -m | grep -qx curl; } || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    (apt-get install -y -q php-cli php-curl || (apt-get update -q && apt-get install -y -q php-cli php-curl)) \
	      >/dev/null 2>&1 || echo "warning: php-cli could not be installed: the PHP module tests will skip"; \
	  else echo "warning: php or php-curl missing (root and apt-get install them): PHP module tests may skip"; fi; }

unit: setup php-cli
	$(BIN)/pytest -n $(PYTEST_WORKERS)

test: lint typecheck unit

bench: setup
	$(BIN)/python -m integration_sync_tests.bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
