# The two commands of the README: `make demo` runs the main job, `make test` the tests.
# Everything installs into .venv from this project's own files.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: all demo test unit integration lint types fmt bench e2e clean venv

all: lint types test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/chorus demo

test: $(STAMP)
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

types: $(STAMP)
	$(BIN)/mypy

BENCH_STAMP := $(VENV)/.bench-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	rm -f $(VENV)/.bench-*
	touch $@

# The limiter first: the throughput table quotes its rate-limited run.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.limiter
	$(BIN)/python -m bench.enqueue
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.cost

# The browser check of Flower and docker-compose's own check of the compose file:
# installs Debian's chromium and docker-compose when missing (apt-get, as root or
# through sudo), then runs those tests, failing rather than skipping without them.
E2E_TESTS := tests/integration/test_flower_browser.py tests/integration/test_fleet_compose.py
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

e2e: $(STAMP)
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then \
		echo "e2e: installing chromium and docker-compose (Debian packages)"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium docker-compose; \
	fi
	CHORUS_E2E=1 $(BIN)/python -m pytest $(E2E_TESTS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
