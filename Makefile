# salad — install, reproduce, test. Needs only python3 (3.11), git and make.
#
#   make install   create .venv and install the exact pins (instant when nothing changed)
#   make repro     install, then `dvc repro` (the whole pipeline on params.yaml)
#   make test      install, then pytest
#   make clean     remove the virtualenv and Python caches (DVC outputs are left to DVC: `dvc gc`, `dvc remove`)
#
# Install order matters: torch==2.13.0 first (the CPU wheel; a looser spec pulls CUDA wheels), then the pins of
# requirements.txt (which repeat torch==2.13.0 so nothing can move it), then moshi with --no-deps (its own pins
# conflict with torch 2.13), then this package, editable, with --no-deps.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -n 2 --dist loadfile   # two workers; a file stays on one worker (module fixtures are built once)
DVC_ARGS ?=

.PHONY: help install repro test clean

help:
	@echo "targets: install | repro | test | clean"

install: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
		echo "creating $(VENV) with $$($(PYTHON) --version 2>&1)"; \
		$(PYTHON) -m venv $(VENV); \
	fi
	@$(BIN)/python -c 'import sys; v = sys.version_info[:2]; sys.exit(0) if v == (3, 11) else print(f"warning: pins were resolved on Python 3.11; {sys.executable} is {v[0]}.{v[1]}", file=sys.stderr)'
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip install --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install --no-deps -e .
	touch $(STAMP)

repro: install
	@if [ ! -d .dvc ]; then \
		echo "error: no .dvc/ directory here; \`make repro\` runs \`dvc repro\` and needs the DVC project of the" \
		     "repository (a clone of the repository has it; do not copy the tree without .dvc/)." >&2; \
		exit 1; \
	fi
	@if ! git rev-parse --verify --quiet HEAD >/dev/null 2>&1; then \
		echo "error: dvc needs a git repository with at least one commit (this is not one, or it is empty:" \
		     "dvc fails with 'Empty git repo'); commit the tree first: git add -A && git commit -m initial" >&2; \
		exit 1; \
	fi
	export PATH="$(CURDIR)/$(BIN):$$PATH"; $(BIN)/dvc repro $(DVC_ARGS)

test: install
	export PATH="$(CURDIR)/$(BIN):$$PATH"; $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
	find . -path ./.git -prune -o -type d -name .ipynb_checkpoints -prune -exec rm -rf {} +
