# Kinema: two commands from a fresh clone.
#   make demo   set up .venv and generate the default prompt with the shipped model (models/default)
#   make test   set up .venv, lint, check formatting, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kinema-installed

.PHONY: setup demo test lint format bench clean chromium

setup: $(STAMP)

# torch is installed first and pinned: 2.13.0 is the CPU wheel; an unpinned torch would pull CUDA.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kinema demo --out outputs/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The browser tests drive Debian's Chromium; install it when missing and apt is usable (as root).
# Never fails: without Chromium those tests skip.
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
			|| echo "chromium could not be installed: the browser tests will skip"; \
	fi

test: lint chromium
	$(BIN)/python -m pytest -n 2 --durations=10

bench: $(STAMP)
	$(BIN)/python benchmarks/world_render.py --n 10000
	$(BIN)/python benchmarks/worldbench_validity.py

clean:
	rm -rf outputs .pytest_cache .ruff_cache
