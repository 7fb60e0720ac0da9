# Two entry points for a fresh machine: `make run` (index the bundled sample corpus, serve UI + API) and
# `make test` (lint, type-check, all tests). Each builds its own virtualenv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-installed
RUN_STAMP := $(VENV)/.run-deps-installed

.PHONY: run test install install-run lint typecheck pytest test-es bench clean

# What running needs, nothing more (`make run`); the dev tools come on top for `make test`.
$(RUN_STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# The CPU build of torch first: any other torch spec would pull a multi-GB CUDA build.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install ".[onnx]"
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install ".[dev,onnx]"
	touch $(STAMP)

# Always reinstall the project itself (non-editable): tests run against the installed package.
define reinstall
	rm -rf build  # setuptools would package stale files left in build/lib by an earlier install
	$(PY) -m pip install --no-deps --force-reinstall --no-build-isolation . >/dev/null
endef

install: $(STAMP)
	$(reinstall)

install-run: $(RUN_STAMP)
	$(reinstall)

run: install-run
	$(BIN)/rag-platform demo

lint: install
	$(BIN)/ruff check rag_platform rag_platform_tests benchmarks setup.py
	$(BIN)/ruff format --check rag_platform rag_platform_tests benchmarks setup.py

typecheck: install
	$(BIN)/mypy rag_platform

pytest: install
	RAG_PLATFORM_TEST_INSTALLED=1 $(BIN)/pytest

test: lint typecheck pytest

test-es: install
	@test -n "$$RAG_ES_URL" || (echo "set RAG_ES_URL (and RAG_ES_PASSWORD or RAG_ES_API_KEY) first" >&2; exit 2)
	RAG_PLATFORM_TEST_INSTALLED=1 $(BIN)/pytest -m es -v rag_platform_tests/backends

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .rag_platform
