# The targets the README and CI both call. Each one sets up .venv first (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH := torch==2.13.0
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`: most tests wait on real servers, so two share two cores well. Each file (or
# folder sharing session servers, tests/conftest.py) runs on one worker, in collection order; PYTEST_WORKERS=0: none.
PYTEST_WORKERS ?= 2

.PHONY: run test venv venv-dev lint bench-todo bench-retrieval bench-stores bench-scale check-reliability clean chromium

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# CPU torch first, pinned: an unpinned torch (asked for by sentence-transformers) would pull GBs of CUDA wheels.
$(VENV)/.run-stamp: pyproject.toml | $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[retrieval]"
	touch $@

$(VENV)/.dev-stamp: pyproject.toml $(VENV)/.run-stamp
	$(PIP) install -q -e ".[retrieval,postgres,milvus,qdrant,chroma,lancedb,dev,bench]"
	touch $@

venv: $(VENV)/.run-stamp
venv-dev: $(VENV)/.dev-stamp

run: venv
	$(VENV)/bin/plugkit serve all

# The OAuth sign-in page is tested in headless Debian Chromium; install it when missing (needs root).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update && apt-get install -y chromium); } \
		|| { echo "chromium is missing: run 'apt-get install -y chromium' as root" >&2; exit 1; }

test: venv-dev chromium lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

lint: venv-dev
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench-todo: venv-dev
	$(PY) bench/todo.py

bench-retrieval: venv-dev
	$(PY) bench/retrieval.py

bench-stores: venv-dev
	$(PY) bench/stores.py

bench-scale: venv-dev
	$(PY) bench/scale.py

# Fuzzing, hostile inputs, load and kill -9 rounds against every plugin (at most 20 minutes); quick parts run in `test`.
check-reliability: venv-dev
	timeout 1200 $(PY) bench/reliability.py

clean:
	rm -rf $(VENV) .plugkit .pytest_cache
