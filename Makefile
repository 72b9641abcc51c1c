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
	$(PY) -m pytest

bench-deps: $(BENCH_STAMP)

# Build the Dify package with the `dify` CLI (not on PyPI; see README "Dify plugin").
package:
	@if command -v dify >/dev/null 2>&1; then \
		dify plugin package . -o sse_fanin-0.1.0.difypkg && echo "built sse_fanin-0.1.0.difypkg"; \
	else \
		echo "make package needs the dify CLI, which is not on PATH."; \
		echo "  macOS:  brew tap langgenius/dify && brew install dify"; \
		echo "  other:  download dify-plugin-<os>-<arch> from the langgenius/dify-plugin-daemon releases page,"; \
		echo "          chmod +x it, put it on PATH as 'dify', then run make package again."; \
		exit 1; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
