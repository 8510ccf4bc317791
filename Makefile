# kaito-ctrl developer entry points. On a fresh machine: `make run`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: all install binaries run down status test lint typecheck unit integration e2e bench chaos crds clean

all: test

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing kaito-ctrl with its dev tools"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok from their Go
# modules once (about 10 minutes on 2 cores), then reuses them from ~/.cache/kaito-ctrl.
binaries:
	@bash hack/build-control-plane.sh >/dev/null
	@bash hack/build-karpenter.sh >/dev/null
	@bash hack/build-toxiproxy.sh >/dev/null

run: install binaries
	@$(BIN)/kaito-ctrl sandbox up

down: install
	@$(BIN)/kaito-ctrl sandbox down

status: install
	@$(BIN)/kaito-ctrl sandbox status

lint: install
	@echo "==> ruff"
	@$(BIN)/ruff check kaito_ctrl tests e2e bench hack
	@$(BIN)/ruff format --check kaito_ctrl tests e2e bench hack

typecheck: install
	@echo "==> mypy --strict"
	@$(BIN)/mypy

unit: install
	@$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

integration: install binaries
	@$(BIN)/pytest tests/integration -q $(PYTEST_ARGS)

e2e: install binaries
	@$(BIN)/pytest e2e -q $(PYTEST_ARGS)

test: install binaries lint typecheck
	@echo "==> pytest (unit, integration, e2e)"
	@$(BIN)/pytest tests e2e -q -p no:cacheprovider $(PYTEST_ARGS)

bench: install binaries
	@$(BIN)/python -m bench.run_all

chaos: install binaries
	@rm -f .chaos-report.jsonl
	@KAITO_CHAOS_REPORT=$(CURDIR)/.chaos-report.jsonl $(BIN)/pytest tests e2e -q -p no:cacheprovider -m chaos --chaos-full $(PYTEST_ARGS)
	@$(BIN)/python hack/chaos_summary.py .chaos-report.jsonl

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
