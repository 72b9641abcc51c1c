# `make demo` and `make test` work on a fresh clone: they create .venv with Python 3.12 when missing.
PYTHON ?= $(shell command -v python3.12 2>/dev/null || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test bench-deps bench package clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml requirements.txt requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt -e .
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install -q -r requirements-bench.txt
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(VENV)/bin/fanin demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

bench-deps: $(BENCH_STAMP)

# The Dify package, built from a staging folder of runtime files only (dist/staging/sse_fanin):
# with the dify CLI on PATH by `dify plugin package`, else an unsigned zip of the same layout.
package:
	$(PYTHON) pluginpack/build.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
