# funnel: two commands on a fresh machine.
#   make demo   set up, then generate -> ingest -> sessions -> build -> serve on the embedded default
#   make test   set up, then run the whole test suite
# Set-up is idempotent: a second run reinstalls nothing (stamp keyed on pyproject.toml).

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
FUNNEL := $(VENV)/bin/funnel
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
DEMO_WS ?= funnel-workspace
DEMO_EVENTS ?= 200000

.PHONY: install system demo test test-fast lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev,bench,redis,spark]"
	@rm -f $(VENV)/.installed-*
	@touch $@

# System packages some tests need (headless Chromium for the web page, redis-server for the
# Redis state store). Installed by the project's own script; tests skip clearly without them.
system:
	@bash scripts/setup-system.sh

DEMO_PORT ?= 8000
DEMO_SERVE ?= 1

demo: install
	$(FUNNEL) generate --workspace $(DEMO_WS) --events $(DEMO_EVENTS) --seed 0
	$(FUNNEL) sessions --workspace $(DEMO_WS)
	$(FUNNEL) build --workspace $(DEMO_WS)
	$(FUNNEL) stats --workspace $(DEMO_WS)
ifeq ($(DEMO_SERVE),1)
	@echo "open http://127.0.0.1:$(DEMO_PORT)/ (Ctrl-C stops the server)"
	$(FUNNEL) serve --workspace $(DEMO_WS) --port $(DEMO_PORT)
endif

test: install system
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(DEMO_WS) .pytest_cache .ruff_cache
