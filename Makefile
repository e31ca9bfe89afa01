# Two commands on a fresh machine: `make demo` and `make test`.
# torch==2.13.0 is installed first so pip takes the CPU wheel present on this kind of machine
# instead of resolving `torch>=2.4` to a multi-GB CUDA build. Real users keep the range.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint venv clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,demo]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	MUJOCO_GL=disable HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/anyfeedback demo

test: $(STAMP)
	MUJOCO_GL=disable HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) build *.egg-info
