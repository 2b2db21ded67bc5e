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

.PHONY: setup demo test lab lint model clean

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

# The shipped model, from nothing: generate `shapes`, train `shapes-tiny` (evaluates on val at the
# end), export the fp16 release checkpoint + card into the package.
model: $(STAMP)
	$(BIN)/cfnet data shapes --out data/shapes --num-train 2000 --num-val 200 --size 128 --seed 0
	$(BIN)/cfnet train --preset shapes-tiny --data data/shapes --out runs/shapes-tiny
	$(BIN)/cfnet export --run runs/shapes-tiny --out cfnet/weights/shapes-tiny.pt \
	    --data-seed 0 --data-size 128 --num-train 2000 --num-val 200

lint: $(STAMP)
	$(BIN)/ruff check cfnet app tests

clean:
	rm -rf $(VENV) build *.egg-info
