# Two commands on a fresh machine: `make demo` and `make test`.
# torch==2.13.0 is installed first so pip takes the CPU wheel instead of resolving
# `torch>=2.4` to a multi-GB CUDA build (TORCH=... overrides it). The package itself keeps the
# range. Each target installs the extras it needs once per pyproject.toml version (a stamp file), so
# a re-run on a ready venv starts in seconds.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
HASH    := $(shell cksum pyproject.toml | cut -d' ' -f1)
ENVVARS := MUJOCO_GL=disable HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

.PHONY: demo test lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.demo-$(HASH): $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[demo]"
	rm -f $(VENV)/.demo-*
	touch $@

$(VENV)/.test-$(HASH): $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,demo,control]"
	rm -f $(VENV)/.test-* $(VENV)/.demo-*
	touch $@ $(VENV)/.demo-$(HASH)

demo: $(VENV)/.demo-$(HASH)
	$(ENVVARS) $(BIN)/anyfeedback demo --overwrite   # a re-run replaces its own runs/demo

test: $(VENV)/.test-$(HASH)
	$(ENVVARS) $(BIN)/python -m pytest -q

lint: $(VENV)/.test-$(HASH)
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests benchmarks experiments

clean:
	rm -rf $(VENV) build src/*.egg-info
