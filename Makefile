# The two commands of README.md:  `make up` (stack + demo) and `make test` (lint, types, all tests).
# Both set up the virtualenv first (Python >= 3.11, packages from PyPI only; no Docker needed).
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin

.PHONY: setup up test lint unit clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv \
	  && $(BIN)/uv pip install -q --python $(BIN)/python -e ".[local,test]" \
	  || $(BIN)/python -m pip install -q --disable-pip-version-check -e ".[local,test]"
	@touch $@

up: setup
	$(BIN)/productgraph up

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q tests/unit

test: lint
	$(BIN)/pytest -q -ra

clean:
	rm -rf $(VENV) .productgraph .mypy_cache .ruff_cache .pytest_cache
