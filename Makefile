# salad — install, reproduce, test. Needs only python3 (3.11), git and make.
#
#   make install        create .venv and install the exact pins (instant when nothing changed)
#   make repro          install, then `dvc repro` (the whole pipeline on params.yaml)
#   make test           install, then pytest
#   make exp-run SET=k=v   `dvc exp run -S k=v` (SET may hold several, space-separated): a sweep
#   make exp-show       the experiments, one row each: the params that differ and the headline metrics
#   make metrics-show   `dvc metrics show`: the headline metrics (metrics/headline.json)
#   make plots-show     `dvc plots show`: training curves and the reports' figures, as dvc_plots/index.html
#   make dvc ARGS="..." any other dvc command, with this project's salad on PATH
#   make clean          remove the virtualenv and Python caches (DVC outputs are left to DVC: `dvc gc`, `dvc remove`)
#
# Every target but install, test and clean takes PROFILE=params/<name>.yaml: it then runs in runs/<name>/, a work tree
# of its own (salad.profiles), so a profile never overwrites the default world's committed results here.
#
# The targets put .venv/bin on PATH for DVC: dvc.yaml's commands call `salad`, and `dvc exp run` run bare from a
# shell that has not activated .venv fails with "salad: command not found" (and deletes the outputs it was about
# to rebuild; `git checkout -- metrics dvclive reports && .venv/bin/dvc checkout` brings them back).
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
PROFILE ?=
SET ?=
ARGS ?=

# Where DVC runs: here, or the profile's own work tree. In a profile's tree `salad` imports that tree's sources
# (PYTHONPATH before the editable install), the ones DVC hashes there.
ifeq ($(strip $(PROFILE)),)
RUN_DIR := $(CURDIR)
PROFILE_TREE :=
else
PROFILE_TREE_DIR := runs/$(basename $(notdir $(PROFILE)))
RUN_DIR := $(CURDIR)/$(PROFILE_TREE_DIR)
PROFILE_TREE := $(BIN)/salad profile-workspace --profile $(PROFILE) --out $(PROFILE_TREE_DIR)
endif
# a profile's tree commits its results after each repro: the baseline that `dvc exp run` and `dvc exp show` compare to
COMMIT_RESULTS := $(if $(PROFILE),cd $(RUN_DIR) && git add -A && (git diff --cached --quiet || git -c user.name=salad \
                  -c user.email=salad@localhost commit -q -m "results of $(PROFILE)"))
DVC := cd $(RUN_DIR) && PATH="$(CURDIR)/$(BIN):$$PATH" PYTHONPATH="$(if $(PROFILE),$(RUN_DIR)/src:)$${PYTHONPATH:-}" \
       $(CURDIR)/$(BIN)/dvc

.PHONY: help install repro test clean exp-run exp-show metrics-show plots-show dvc

help:
	@echo "targets: install | repro | test | exp-run SET=k=v | exp-show | metrics-show | plots-show | dvc ARGS=... | clean"
	@echo "(all but install, test and clean take PROFILE=params/<name>.yaml: they run in runs/<name>/)"

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
	$(PROFILE_TREE)
	$(DVC) repro $(DVC_ARGS)
	$(COMMIT_RESULTS)

# a sweep needs the pipeline's results committed as its baseline: `dvc exp run` compares against HEAD
exp-run: install
	@if [ -z "$(strip $(SET))" ]; then echo "error: name what to set, e.g. make exp-run SET=alpha=0.5" >&2; exit 2; fi
	$(PROFILE_TREE)
	$(DVC) exp run $(foreach kv,$(SET),-S $(kv)) $(DVC_ARGS)

# One row per experiment, in 120 columns: the params that differ between the rows and the student's headline metrics
# (metrics/headline.json; the teacher's accuracy shows when it differs). DVC matches these patterns at the start of
# a column's name; dropped: the dependency hashes (paths), M's standard error, the creation time.
EXP_SHOW_KEEP := (M|F|acc_text|acc_speech|gap_speech|gap_text)$$
EXP_SHOW_DROP := .*/|M_se$$|Created
exp-show: install
	$(DVC) exp show --no-pager --only-changed --drop '$(EXP_SHOW_DROP)' --keep '$(EXP_SHOW_KEEP)' $(DVC_ARGS)

metrics-show: install
	$(DVC) metrics show $(DVC_ARGS)

plots-show: install
	$(DVC) plots show $(DVC_ARGS)

dvc: install
	$(DVC) $(ARGS)

test: install
	export PATH="$(CURDIR)/$(BIN):$$PATH"; $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
	find . -path ./.git -prune -o -type d -name .ipynb_checkpoints -prune -exec rm -rf {} +
