# loopml — two commands: `make run` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PGURL  ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall only when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	@echo "loopml: http://127.0.0.1:5100  (API docs: http://127.0.0.1:5100/api/v1/docs; Ctrl-C stops)"
	$(BIN)/loopml up --host 127.0.0.1 --port 5100

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	LOOPML_TEST_POSTGRES_URL=$${LOOPML_TEST_POSTGRES_URL:-$(PGURL)} $(BIN)/python -m pytest -q

bench:  # its own .venv-bench, with MLflow beside loopml
	bash benchmarks/run.sh

clean:
	rm -rf $(VENV) .venv-bench .loopml .pytest_cache .mypy_cache .ruff_cache
