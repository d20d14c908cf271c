# KernKoa: every command sets up what it needs, starting from python3 alone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# What serving needs only (make run): the test tools come with make install.
RUN_STAMP := $(VENV)/.installed-run

# Where make run listens, e.g. make run PORT=8080 (empty: the PORT setting, 5000).
PORT ?=

# Programs the test suite runs for real, from the distribution when missing.
SYSTEM_TOOLS := curl:curl redis-server:redis-server nginx:nginx-light shellcheck:shellcheck chromium:chromium wrk:wrk valgrind:valgrind prometheus:prometheus

# Extra arguments for the benchmarks, e.g. make bench BENCH_ARGS="--only dispatch --rounds 7".
BENCH_ARGS ?=

.PHONY: install run test lint typecheck clean system-tools bench chaos

install: $(STAMP)

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/kernkoa serve $(if $(PORT),--port $(PORT))

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# mypy --strict on kernel/ (configured in pyproject.toml).
typecheck: install
	$(BIN)/mypy

system-tools:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq $$missing >/dev/null; \
	fi

test: install lint typecheck system-tools
	$(BIN)/python -m pytest

# Benchmarks on real uWSGI servers driven by wrk (see bench/RESULTS.md).
# Only the programs the benchmarks run (wrk, redis-server, nginx...), not the whole test list.
bench: install
	$(MAKE) --no-print-directory system-tools SYSTEM_TOOLS="redis-server:redis-server wrk:wrk valgrind:valgrind nginx:nginx-light"
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The fault suite: tasks under load while Redis restarts and workers die or
# freeze (see bench/chaos.py), e.g. make chaos CHAOS_ARGS="--only worker-kill".
CHAOS_ARGS ?=

chaos: install
	$(MAKE) --no-print-directory system-tools SYSTEM_TOOLS="redis-server:redis-server"
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache *.egg-info
