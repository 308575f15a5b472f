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
# ~20 clicks per item: the least density at which personalization measurably helped searches
# (benchmarks/RESULTS.md, "personalization and data density"); the generator's own default
# (events / 100 items) gives ~7, where no embedding or id field learns an item
DEMO_ITEMS ?= 600

.PHONY: install system demo test test-fast lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev,bench,redis,spark]"
	@rm -f $(VENV)/.installed-*
	@touch $@

# The neural sequential peer for the real-log next-item benchmark (issue 17): RecTools SASRec in
# its own virtualenv, because RecTools pins numpy < 2 on Python 3.11 and ours does not. Never
# installed into .venv. Idempotent: the stamp is keyed on the pinned versions below.
PEER_VENV := .venv-peer
PEER_RECTOOLS := 0.19.0
PEER_TORCH := 2.13.0
PEER_STAMP := $(PEER_VENV)/.installed-rectools-$(PEER_RECTOOLS)-torch-$(PEER_TORCH)

.PHONY: peer-venv
peer-venv: $(PEER_STAMP)

$(PEER_STAMP):
	@test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q --upgrade pip setuptools wheel
	$(PEER_VENV)/bin/python -m pip install -q "torch==$(PEER_TORCH)"
	$(PEER_VENV)/bin/python -m pip install -q "rectools[torch]==$(PEER_RECTOOLS)" "torch==$(PEER_TORCH)"
	$(PEER_VENV)/bin/python -c "import rectools, torch; from rectools.models import SASRecModel"
	@rm -f $(PEER_VENV)/.installed-*
	@touch $@

# System packages some tests need (headless Chromium for the web page, redis-server for the
# Redis state store). Installed by the project's own script; tests skip clearly without them.
system:
	@bash scripts/setup-system.sh

DEMO_PORT ?= 8000
DEMO_SERVE ?= 1

demo: install
	$(FUNNEL) generate --workspace $(DEMO_WS) --events $(DEMO_EVENTS) --items $(DEMO_ITEMS) --seed 0
	$(FUNNEL) sessions --workspace $(DEMO_WS)
	$(FUNNEL) build --workspace $(DEMO_WS)
	$(FUNNEL) stats --workspace $(DEMO_WS)
ifeq ($(DEMO_SERVE),1)
	@echo "open http://127.0.0.1:$(DEMO_PORT)/ (Ctrl-C stops the server)"
	$(FUNNEL) serve --workspace $(DEMO_WS) --port $(DEMO_PORT) --demo-users
endif

test: install system
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/mypy src

clean:
	rm -rf $(DEMO_WS) .pytest_cache .ruff_cache
