PYTHON ?= python3
VENV := .venv
DEV_VENV := .venv-dev
BENCH_DIR ?= $(HOME)/.cache/lofi.nvim/bench-models

.PHONY: install test dev fixtures clean

## install: create .venv with the engine, its runtime packages and everything the tests need
install:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'

## test: the whole test suite
test:
	$(VENV)/bin/python -m pytest

## dev: a separate environment with torch, transformers and optimum-onnx for fixtures and benchmarks
dev:
	$(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/python -m pip install --quiet -r requirements-dev.txt -e '.[test]'

## fixtures: regenerate tests/fixtures/musicgen-tiny* (random weights, real architecture) and reference outputs
fixtures: dev
	$(DEV_VENV)/bin/python tools/make_musicgen_fixtures.py --size tiny --out tests/fixtures

clean:
	rm -rf $(VENV) $(DEV_VENV) *.egg-info
