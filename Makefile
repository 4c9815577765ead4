# sozo: `make demo` sets up and trains a DCGAN on the bundled MNIST digits; `make test` sets up and runs the tests.
# TORCH_SPEC picks the PyTorch build: the default is the CPU build this machine has on disk.
# A GPU user: make demo TORCH_SPEC='torch'  (or a CUDA wheel of their choice)
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.sozo-installed

.PHONY: setup demo test test-slow bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	rm -rf runs/demo-dcgan
	$(BIN)/sozo train dcgan --epochs 10 --seed 7 --out runs/demo-dcgan
	$(BIN)/sozo sample runs/demo-dcgan --n 64 --seed 1 --out runs/demo-dcgan/grid.png
	$(BIN)/sozo interpolate runs/demo-dcgan --steps 10 --seed 3 --out runs/demo-dcgan/walk.gif
	@echo "demo done: open runs/demo-dcgan/samples/ (one grid per epoch), grid.png and walk.gif"

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
