# Codex developer commands. `make run` starts the whole stack, `make test` is what CI runs.
# Every target works with the app's embedded defaults (no environment needed); a .env file is
# honoured by the app, by honcho and by scripts/ensure-services.sh.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# Steps depend on each other's side effects (services before migrations, lint before tests).
.NOTPARALLEL:

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROCESSES := web worker media beat flower

export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help venv install lock services migrate seed dirs run lint test docs bench chaos clean distclean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { echo "could not create $(VENV): on Debian, apt-get install python3-venv"; exit 1; }

# Re-install only when the lock or pyproject.toml changed since the last install: first exactly the
# pinned, hash-checked dependencies of requirements-dev.lock, then the project itself without
# resolving anything again (--no-deps), so what runs is what the lock says.
$(STAMP): requirements-dev.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

venv: $(STAMP) ## create .venv and install the locked dependencies, the project and its dev tools
install: $(STAMP) ## same as venv

# The locks are resolved from pyproject.toml for the deployment target (CPython 3.11 on Linux
# x86_64) by uv (a dev dependency), from the default package index only: --no-config and the unset
# UV_* index variables keep this machine's own indexes and find-links out of the lock. Existing pins
# are kept when they still fit; `make lock UPGRADE=1` moves every pin to the newest allowed version.
# The runtime lock is resolved within the dev lock's pins, so both name the same versions.
UV_COMPILE := env -u UV_INDEX -u UV_INDEX_URL -u UV_DEFAULT_INDEX -u UV_EXTRA_INDEX_URL -u UV_FIND_LINKS \
	UV_CUSTOM_COMPILE_COMMAND='make lock' $(BIN)/uv pip compile --quiet --no-config --generate-hashes \
	--python-version 3.11 --python-platform x86_64-unknown-linux-gnu $(if $(UPGRADE),--upgrade)

lock: $(STAMP) ## re-resolve requirements.lock and requirements-dev.lock from pyproject.toml (UPGRADE=1: newest)
	$(UV_COMPILE) pyproject.toml --extra dev -o requirements-dev.lock
	$(UV_COMPILE) pyproject.toml --constraint requirements-dev.lock -o requirements.lock

services: ## make sure PostgreSQL and Redis answer (start/install local ones)
	scripts/ensure-services.sh

migrate: install services ## alembic upgrade head (creates the database when missing)
	$(BIN)/alembic upgrade head

# The app is loaded first (FLASK_APP comes from .flaskenv): a broken configuration stops here with
# the app's own error, before services or ffmpeg are looked at.
seed: install ## load the demo data (services + ffmpeg, which generates and ingests the demo media)
	@$(BIN)/flask codex --help >/dev/null
	scripts/ensure-services.sh --with-ffmpeg
	$(BIN)/flask codex seed

dirs:
	@mkdir -p var/storage var/mail

run: install services migrate seed dirs ## start web, workers, beat and flower (Ctrl-C stops all)
	@echo "run: API http://localhost:$${PORT:-5000}  docs /api/v1/docs  Flower http://localhost:5555  mail var/mail/"
	$(BIN)/honcho start -f Procfile $(PROCESSES)

.PHONY: stack
stack: install ## docker-compose's topology as local processes (S3: moto, SMTP sink, own DB and Redis; Ctrl-C stops)
	scripts/ensure-services.sh --with-ffmpeg
	scripts/stack.sh

lint: install ## ruff (lint and format) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install ## services (with ffmpeg), lint, then the test suite
	scripts/ensure-services.sh --with-ffmpeg
	scripts/ensure-browser.sh
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -n 2 -q

docs: install ## regenerate docs/api/openapi.json (tests/foundation/test_docs.py checks it is current)
	$(BIN)/flask codex openapi --output docs/api/openapi.json

bench: install services migrate ## run bench/bench_*.py and write bench/RESULTS.md
	$(BIN)/python bench/run.py

chaos: install services ## failure-injection tests at full scale (tests/chaos; make test runs a short version)
	scripts/ensure-services.sh --with-ffmpeg
	CHAOS_SCALE=full $(BIN)/pytest -p no:xdist tests/chaos -m chaos -q -s

clean: ## remove caches and build leftovers (keeps .venv and var/ data)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist bench/out var/celerybeat-schedule*
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean ## also remove .venv
	rm -rf $(VENV)
