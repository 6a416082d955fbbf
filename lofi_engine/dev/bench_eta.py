"""How honest the ETA is (SC-003, issue 14 item 5), measured the way a user sees it: through `lofi serve`.

A fresh engine composes pieces one after another; every `generation_progress` event's ``eta_sec`` is compared with
when the piece really completed. The error of an event is |its time + eta_sec − completion| over the piece's
generation time (from its last model-load event, or its start, to its completion); the worst error from the 10 %
event on is reported per piece.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lofi_engine.musicgen.model import COSTS_FILE

PROMPTS = ("lofi hip hop, jazzy piano", "rainy night, mellow guitar", "slow ambient synth pads")


def serve_pieces(model_dir: Path, cache_dir: Path, threads: int, pieces: int, duration: float, first_seed: int = 0) -> list[dict[str, Any]]:
    """``pieces`` pieces of ``duration`` seconds from one fresh `lofi serve`, each asked for after the last one
    completed; the worst ETA error of each. Seeds from ``first_seed`` on (a piece already in the cache would not be
    composed again)."""
    command = [sys.executable, "-m", "lofi_engine", "serve", "--model-dir", str(model_dir), "--cache-dir", str(cache_dir), "--threads", str(threads)]
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env={**os.environ, "XDG_STATE_HOME": str(cache_dir / "state")})
    assert server.stdin is not None and server.stdout is not None
    results = []
    try:
        for piece in range(pieces):
            request = {"prompt": PROMPTS[piece % len(PROMPTS)], "duration_sec": duration, "seed": first_seed + piece}
            server.stdin.write(json.dumps({"jsonrpc": "2.0", "id": piece, "method": "generate", "params": request}) + "\n")
            server.stdin.flush()
            begun, progress = time.monotonic(), []
            while True:
                line = server.stdout.readline()
                if not line:
                    raise RuntimeError("lofi serve exited during the ETA measurement")
                now, message = time.monotonic(), json.loads(line)
                method, params = message.get("method"), message.get("params") or {}
                if method in ("generation_start", "model_load_progress"):
                    begun = now
                elif method == "generation_progress":
                    progress.append((now, params["percent"], params["eta_sec"]))
                elif method == "generation_error":
                    raise RuntimeError(f"piece {piece} failed: {params}")
                elif method == "generation_complete":
                    break
            took = now - begun
            errors = [(percent, abs(at + eta - now) / took) for at, percent, eta in progress if percent >= 10]
            worst = max(errors, key=lambda e: e[1])
            results.append({"piece": piece + 1, "generation_sec": took, "worst_eta_error": worst[1], "at_percent": worst[0],
                            "events": [{"percent": p, "eta_sec": e, "truth_sec": now - at} for at, p, e in progress]})
    finally:
        server.stdin.close()
        server.wait(timeout=120)
    return results


def cache_without_costs(optimized: Path, cache_dir: Path) -> None:
    """``cache_dir`` whose optimized graphs are ``optimized``'s (linked, nothing rebuilt) but with no learned costs:
    the first job ever on this machine."""
    target = cache_dir / "optimized"
    target.mkdir(parents=True, exist_ok=True)
    for entry in optimized.iterdir():
        if entry.name != COSTS_FILE and not entry.name.startswith("."):
            (target / entry.name).symlink_to(entry.resolve())

