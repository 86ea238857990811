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

.PHONY: help venv install services migrate seed dirs run lint test bench chaos clean distclean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { echo "could not create $(VENV): on Debian, apt-get install python3-venv"; exit 1; }

# Re-install only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP) ## create .venv and install the project with its dev tools
install: $(STAMP) ## same as venv

services: ## make sure PostgreSQL and Redis answer (start/install local ones)
	scripts/ensure-services.sh

migrate: install services ## alembic upgrade head (creates the database when missing)
	$(BIN)/alembic upgrade head

seed: install ## load the demo data (services + ffmpeg, which generates and ingests the demo media)
	@if $(BIN)/flask --app app codex --help 2>/dev/null | grep -w seed >/dev/null; then \
		scripts/ensure-services.sh --with-ffmpeg && $(BIN)/flask --app app codex seed; \
	else \
		echo "seed: no 'flask --app app codex seed' command yet, nothing to load"; \
	fi

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
