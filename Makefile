# Two commands set everything up on a fresh machine:
#   make run   - virtualenv, install, offline models, database upgrade, then the service
#   make test  - the same plus dev tools, then ruff, mypy and pytest
# Both are idempotent: stamps skip the installs when nothing changed.

PYTHON ?= python3
# The CPU build of torch 2.13.0 lies on this project's machines; pinning it first stops pip
# from pulling a multi-GB CUDA build to satisfy a dependency. Override for GPU hosts.
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= var
MODEL_STAMP := $(DATA_DIR)/models/smollm2-135m-instruct/config.json
PYTEST_ARGS ?=

.PHONY: run test install install-dev models lint typecheck pytest bench evaluate clean help

help:
	@echo "make run    - set up and start Switchboard (console chat when no platform is configured)"
	@echo "make test   - set up with dev tools, then ruff, mypy and pytest"
	@echo "make bench  - run the speed benchmarks in bench/ (ratios against side-by-side baselines)"
	@echo "make evaluate - the evaluations on the public datasets in DATA (default ../shared/data)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

$(MODEL_STAMP): | $(VENV)/.installed
	DATA_DIR=$(DATA_DIR) $(BIN)/switchboard models fetch

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
models: $(MODEL_STAMP)

# Settings for the service itself come from the environment and .env (see .env.example).
run: install models
	$(BIN)/switchboard run

lint: install-dev
	$(BIN)/ruff check .

typecheck: install-dev
	$(BIN)/mypy

pytest: install-dev models
	$(BIN)/pytest $(PYTEST_ARGS)

test: install-dev models
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

# The public datasets live beside the checkout (see ../shared/EVALUATION.md).
DATA ?= ../shared/data
SPEED_BENCHES := batching model_server retrieval_speed recommend_speed slack_ack telegram_dispatch soak

bench: install-dev models
	@for b in $(SPEED_BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

evaluate: install-dev models
	$(BIN)/python bench/eval_sentiment.py $(DATA)
	$(BIN)/python bench/eval_sentiment.py $(DATA) --zh
	$(BIN)/python bench/eval_qa.py $(DATA)
	$(BIN)/switchboard eval recommend $(DATA)
	$(BIN)/python bench/support_check.py
	$(BIN)/python bench/support_check.py --docs bench/data/support-heldout/docs \
		--conversations bench/data/support-heldout/conversations.csv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
