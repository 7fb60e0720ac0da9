# Two entry points for a fresh machine: `make run` (index the bundled sample corpus, serve UI + API) and
# `make test` (lint, type-check, all tests). Each builds its own virtualenv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-installed
RUN_STAMP := $(VENV)/.run-deps-installed

.PHONY: run test install install-run lint typecheck pytest test-es bench clean es-spec browser

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
	# The compose file is validated by Debian's docker-compose (no engine needed); skipped where it cannot install.
	command -v docker-compose >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; } || \
		echo "docker-compose not installed: the compose validation test will skip" >&2
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

# The Elasticsearch API specification the ES stand-in validates requests against: installed from npm at test
# time into the git-ignored .es-spec/, never vendored. Without npm the stand-in's semantic rules still run and the
# specification test reports itself skipped.
ES_SPEC := .es-spec/schema.json
$(ES_SPEC):
	-$(PY) rag_platform_tests/backends/es_spec.py

es-spec: $(ES_SPEC)

# The search page is tested in a real headless browser: Debian's chromium (Playwright from the dev extra
# drives it). Installed here when possible; without it those tests skip and say why.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "no chromium and not root: the search page browser tests will skip" >&2; fi

pytest: install $(ES_SPEC) browser
	RAG_PLATFORM_TEST_INSTALLED=1 $(BIN)/pytest

test: lint typecheck pytest

test-es: install $(ES_SPEC)
	@test -n "$$RAG_ES_URL" || (echo "set RAG_ES_URL (and RAG_ES_PASSWORD or RAG_ES_API_KEY) first" >&2; exit 2)
	RAG_PLATFORM_TEST_INSTALLED=1 $(BIN)/pytest -m es -v rag_platform_tests/backends

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .rag_platform .es-spec
