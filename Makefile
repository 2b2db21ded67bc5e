# Two entry points: `make demo` (set up, then start the demo) and `make test` (set up, then test).
# Set-up is idempotent: the venv is rebuilt only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Pinned so every machine resolves the same build; see README "Environment".
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: setup demo test lab lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH_PINS) -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cfnet demo --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

lint: $(STAMP)
	$(BIN)/ruff check cfnet app tests

clean:
	rm -rf $(VENV) build *.egg-info
