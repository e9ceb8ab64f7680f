# Everything a newcomer needs: `make run` and `make test` set themselves up from a clean clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench faults lock deploy-check clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

run: install
	$(BIN)/formrelay db upgrade
	$(BIN)/formrelay form demo
	$(BIN)/formrelay serve

# Parallel workers (pytest-xdist), each with databases of its own; TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto

test: install
	scripts/ensure-test-deps
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	scripts/ensure-bench-deps
	$(BIN)/python bench/run.py

# Real processes under kill -9, outages and a full disk (minutes); `make test` leaves them out.
faults: install
	$(BIN)/pytest -q -p no:cacheprovider tests/faults

# requirements.txt: the runtime dependencies resolved by pip and pinned, for the buildpack.
lock:
	scripts/lock-requirements

# A fresh venv with exactly what the buildpack installs, then the Procfile's commands (minutes).
deploy-check: install
	$(BIN)/pytest -q -p no:cacheprovider tests/deploy

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache .mypy_cache tests/js/node_modules
