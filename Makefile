# sozo: `make demo` sets up and trains a DCGAN on the bundled MNIST digits; `make test` sets up and runs the tests.
# TORCH_SPEC picks the PyTorch build: the default is the CPU build this machine has on disk.
# A GPU user: make demo TORCH_SPEC='torch'  (or a CUDA wheel of their choice)
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.sozo-installed

.PHONY: setup demo test test-slow lint bench bench-gpu clean browser docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test,games]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	rm -rf runs/demo-dcgan
	# preset=wide: sozo's larger DCGAN, clearer digits in 10 epochs than the chapter's network (the default)
	$(BIN)/sozo train dcgan --set preset=wide --epochs 10 --seed 7 --out runs/demo-dcgan
	$(BIN)/sozo sample runs/demo-dcgan --n 64 --seed 1 --out runs/demo-dcgan/grid.png
	$(BIN)/sozo interpolate runs/demo-dcgan --steps 10 --seed 3 --out runs/demo-dcgan/walk.gif
	@echo "demo done: open runs/demo-dcgan/samples/ (one grid per epoch), grid.png and walk.gif"

# tests/test_browser.py drives Debian's chromium through chromedriver; it skips when they are missing.
# As root on a Debian-like machine (CI), install them once; anywhere else, say so and go on.
CHROMIUM ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver
browser:
	@if [ -x "$(CHROMIUM)" ] && [ -x "$(CHROMEDRIVER)" ]; then \
		echo "browser: $(CHROMIUM) and $(CHROMEDRIVER) are installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "browser: installing chromium and chromium-driver with apt-get (for tests/test_browser.py)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
			|| echo "browser: apt-get failed; the browser tests will be skipped"; \
	else \
		echo "browser: no $(CHROMIUM) (and not root with apt-get): the browser tests will be skipped;" \
			"install the chromium and chromium-driver packages to run them"; \
	fi

# lint: ruff check (the agreed style: its rules at line length 120, no `ruff format` pass) and mypy over
# src/sozo; the settings are in pyproject.toml. `make test` runs it first, so CI does too.
LINT_PATHS := src tests benchmarks examples docs/hooks
lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy

# the fast tests in TEST_JOBS processes (pytest-xdist; one torch thread each, see tests/conftest.py), a test
# file to a process so its module fixtures are built once; TEST_JOBS=0 runs them in this process
TEST_JOBS ?= 2
test: $(STAMP) browser lint
	$(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-gpu: $(STAMP)
	$(BIN)/python -m benchmarks --suite gpu

# the documentation site (MkDocs + mkdocstrings; the CLI page is generated from the parser): no network needed
docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict --site-dir site
	@echo "docs: open site/index.html"

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache site
