# `make demo` and `make test` work on a fresh clone: they create .venv with Python 3.12 when missing.
# Set-up never leaves a half-built .venv behind: a failed step removes it, so the next run starts clean.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= $(shell command -v python3.12 2>/dev/null || command -v python3 2>/dev/null || echo python3.12)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
# "3.12" when $(PYTHON) runs and is Python 3.12; anything else refuses the set-up in one line
PYTHON_VERSION = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
NEED_PYTHON = Python 3.12 is needed ($(PYTHON) $(if $(PYTHON_VERSION),is $(PYTHON_VERSION),was not found)): \
install it with pyenv (pyenv install 3.12), from python.org, or apt install python3.12 python3.12-venv, \
then run make again (or make PYTHON=/path/to/python3.12)

.PHONY: demo test wheel bench-deps bench package clean

$(PY):
	$(if $(filter 3.12,$(PYTHON_VERSION)),,$(error $(NEED_PYTHON)))
	@echo "[1/2] creating $(VENV) with $(PYTHON) (Python $(PYTHON_VERSION))"
	@$(PYTHON) -m venv $(VENV) && $(PIP) install -q --upgrade pip || { rm -rf $(VENV); exit 1; }

$(STAMP): $(PY) pyproject.toml requirements.txt requirements-dev.txt
	@echo "[2/2] installing sse-fanin (editable, all extras) and the test tools into $(VENV); pip prints each package"
	@$(PIP) install --progress-bar off -r requirements-dev.txt -e '.[all]' \
		| { grep -E '^(Collecting|Successfully installed)' || true; } || { \
		echo "make: installing into $(VENV) failed (see above); $(VENV) was removed, run make again" >&2; \
		rm -rf $(VENV); exit 1; }
	@touch $(STAMP)

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PIP) install -q -r requirements-bench.txt
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(VENV)/bin/fanin demo
	@echo
	@echo "fanin is in $(VENV)/bin: run 'source $(VENV)/bin/activate' once in this shell, then e.g."
	@echo "  fanin serve --port 8765 &"
	@echo "  fanin stream 'http://127.0.0.1:8765/stream?count=5'"
	@echo "(or call $(VENV)/bin/fanin directly). Next: README.md, docs/cli.md"

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

# The library as `pip install` gets it: dist/sse_fanin-<version>-py3-none-any.whl
# (pip install 'dist/sse_fanin-0.1.0-py3-none-any.whl[locust]' on another machine)
DIST ?= dist
wheel: $(STAMP)
	@$(VENV)/bin/uv build -q --wheel --out-dir $(DIST) .
	@ls $(DIST)/sse_fanin-*.whl

bench-deps: $(BENCH_STAMP)

# The Dify package, built from a staging folder of runtime files only (dist/staging/sse_fanin):
# with the dify CLI on PATH by `dify plugin package`, else an unsigned zip of the same layout.
package:
	$(PYTHON) pluginpack/build.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
