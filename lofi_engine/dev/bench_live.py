"""First sound, measured the way a user meets it: through `lofi serve`, with mpv playing in real time (null output).

On a warm engine (a first short piece loads the model): a ``duration``-second `generate {play: true}`, from the
request to its `playback_start` (first sound) and to its `generation_complete` (when it would be heard if it were
played only once finished: the reference, measured in the same run), and how often the player had to wait for it
(`buffering`); then `radio_start` to its first `playback_start`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PLAYER = "mpv --no-config --really-quiet --no-video --ao=null"


class _Serve:
    def __init__(self, model_dir: Path, variant: str, threads: int, work: Path, optimized: Path | None, *extra: str) -> None:
        cache = work / "cache"
        if optimized is not None:  # the benchmark's graphs, not built again (their learned costs included)
            cache.mkdir(parents=True)
            (cache / "optimized").symlink_to(optimized.resolve())
        command = [sys.executable, "-m", "lofi_engine", "serve", "--model-dir", str(model_dir), "--variant", variant,
                   "--cache-dir", str(cache), "--threads", str(threads), "--player-command", PLAYER, *extra]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "XDG_STATE_HOME": str(work / "state")})
        self.next_id = 0

    def call(self, method: str, params: dict[str, Any]) -> float:
        self.next_id += 1
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}) + "\n")
        self.proc.stdin.flush()
        return time.monotonic()

    def until(self, done: Any) -> list[tuple[float, dict]]:
        """Messages (with when they came) up to and including the first that ``done`` accepts."""
        seen = []
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("lofi serve exited during the measurement")
            message = json.loads(line)
            seen.append((time.monotonic(), message))
            if message.get("method") == "generation_error":
                raise RuntimeError(f"generation failed: {message['params']}")
            if done(message):
                return seen

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


def cpu_seconds_by_role(server_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by `lofi serve` and each process under it, by what it is: the
    server, the engine, the player process (mpv's parent), mpv, multiprocessing's helper."""
    from lofi_engine.dev.processes import descendants

    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float, str]] = {}  # pid: (ppid, cpu seconds, argv)
    for pid, argv in {server_pid: ["serve"], **descendants(server_pid)}.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[pid] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, " ".join(argv))
    players = {ppid for ppid, _, line in stats.values() if "mpv" in line}
    found: dict[str, float] = {}
    for pid, (_, cpu, line) in stats.items():
        role = ("server" if pid == server_pid else "mpv" if "mpv" in line else "player" if pid in players
                else "helper" if "resource_tracker" in line else "engine")
        found[role] = found.get(role, 0.0) + cpu
    return found


def _is(method: str, **fields: Any) -> Any:
    return lambda m: m.get("method") == method and all(m["params"].get(k) == v for k, v in fields.items())


def measure_first_sound(model_dir: Path, variant: str, threads: int, optimized: Path | None = None, duration: float = 30.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lofi-live-") as work:
        serve = _Serve(model_dir, variant, threads, Path(work), optimized)
        try:
            serve.call("generate", {"prompt": "warm up", "duration_sec": 5, "seed": 1})
            serve.until(_is("generation_complete"))
            asked = serve.call("generate", {"prompt": "lofi hip hop, jazzy piano", "duration_sec": duration, "seed": 2, "play": True})
            messages = serve.until(_is("generation_complete"))
            track_id = messages[-1][1]["params"]["track_id"]
            complete = messages[-1][0]
            ended = serve.until(_is("playback_end", track_id=track_id))
            messages += ended
            start = next(t for t, m in messages if _is("playback_start", track_id=track_id)(m))
            waits = sum(1 for _, m in messages if _is("playback_state", state="buffering")(m))
            serve.call("stop", {})
            asked_radio = serve.call("radio_start", {"prompt": "rainy night, mellow guitar", "seed": 3})
            radio_start = serve.until(_is("playback_start"))[-1][0]
            serve.call("radio_stop", {})
        finally:
            serve.close()
    return {
        "variant": variant, "duration_sec": duration,
        "first_sound_sec": start - asked, "complete_sec": complete - asked,
        "first_sound_over_complete": (start - asked) / (complete - asked),
        "buffering_waits": waits, "played_to_end": ended[-1][1]["params"]["reason"],
        "radio_first_sound_sec": radio_start - asked_radio,
    }


def measure_radio_from_audio(model_dir: Path, variant: str, threads: int, optimized: Path | None = None, audio_sec: float = 30.0) -> dict[str, Any]:
    """`radio_start` to first sound from a prompt, and from ``audio_sec`` of the user's audio (`from`: its last
    seconds are encoded by EnCodec's encoder, at full size with random weights, and the first window continues them),
    on one warm engine; the first start from audio also derives and loads the encoder (once per engine)."""
    import soundfile

    from lofi_engine.dev.bench_encoder import write_random_encodec

    with tempfile.TemporaryDirectory(prefix="lofi-radio-from-") as work:
        encodec = Path(work) / "encodec_32khz"
        write_random_encodec(encodec)
        mine = Path(work) / "mine.wav"
        t = np.arange(int(audio_sec * 32000)) / 32000
        soundfile.write(mine, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2).astype(np.float32), 32000)
        serve = _Serve(model_dir, variant, threads, Path(work), optimized, "--encodec-dir", str(encodec))
        firsts: dict[str, list[float]] = {"prompt": [], "from_audio": []}
        try:
            serve.call("generate", {"prompt": "warm up", "duration_sec": 5, "seed": 1})
            serve.until(_is("generation_complete"))
            for run in range(2):
                for kind, extra in (("from_audio", {"from": str(mine)}), ("prompt", {})):
                    asked = serve.call("radio_start", {"prompt": "rainy night, mellow guitar", "seed": 3 + run, **extra})
                    firsts[kind].append(serve.until(_is("playback_start"))[-1][0] - asked)
                    serve.call("radio_stop", {})
                    serve.until(_is("radio_state", active=False))
        finally:
            serve.close()
    return {
        "variant": variant, "audio_sec": audio_sec, "prompt_first_sound_sec": firsts["prompt"], "from_audio_first_sound_sec": firsts["from_audio"],
        "added_first_sound_sec": [a - b for a, b in zip(firsts["from_audio"], firsts["prompt"])],
    }


def measure_link(model_dir: Path, variant: str, threads: int, optimized: Path | None = None, duration: float = 30.0) -> dict[str, Any]:
    """The engine over a command (`engine_command`: here `lofi engine --stdio` as a second process, what ssh would
    start elsewhere) against the local engine, in the same run: the first sound of a ``duration``-second piece with
    play: true on a warm engine, and the bytes the link carried for it per second of music."""
    results: dict[str, Any] = {"variant": variant, "duration_sec": duration}
    with tempfile.TemporaryDirectory(prefix="lofi-link-") as work:
        for kind in ("local", "link"):
            place = Path(work) / kind
            extra: tuple[str, ...] = ()
            if kind == "link":
                engine_cache = place / "engine-cache"
                engine_cache.mkdir(parents=True)
                if optimized is not None:
                    (engine_cache / "optimized").symlink_to(optimized.resolve())
                extra = ("--engine-command", f"{sys.executable} -m lofi_engine engine --stdio --cache-dir {engine_cache} --model-dir {model_dir}")
            serve = _Serve(model_dir, variant, threads, place, optimized, *extra)
            try:
                serve.call("generate", {"prompt": "warm up", "duration_sec": 5, "seed": 1})
                serve.until(_is("generation_complete"))
                before = _link_bytes(serve)
                asked = serve.call("generate", {"prompt": "lofi hip hop, jazzy piano", "duration_sec": duration, "seed": 2, "play": True})
                messages = serve.until(_is("generation_complete"))
                track_id = messages[-1][1]["params"]["track_id"]
                first = next(t for t, m in messages if _is("playback_start", track_id=track_id)(m))
                after = _link_bytes(serve)
                serve.call("stop", {})
            finally:
                serve.close()
            results[f"{kind}_first_sound_sec"] = first - asked
            results[f"{kind}_complete_sec"] = messages[-1][0] - asked
            if kind == "link":
                received, sent = after["received"] - before["received"], after["sent"] - before["sent"]
                results.update(link_bytes_received=received, link_bytes_sent=sent, link_bytes_per_music_sec=(received + sent) / duration)
    results["added_first_sound_sec"] = results["link_first_sound_sec"] - results["local_first_sound_sec"]
    return results


def _link_bytes(serve: _Serve) -> dict[str, int]:
    serve.call("status", {})
    status = serve.until(lambda m: "result" in m and "engine" in m["result"])[-1][1]["result"]
    return (status.get("engine_remote") or {}).get("link_bytes") or {"sent": 0, "received": 0}


def measure_radio_live(model_dir: Path, variant: str, threads: int, minutes: float = 4.0) -> dict[str, Any]:
    """The `continue` radio through `lofi serve` with mpv in real time for ``minutes`` from its first sound: the
    honest real-time factor (generation seconds per second of new music, over the continuing windows) and the time
    spent in rotation (segments heard again while the next window was not ready)."""
    with tempfile.TemporaryDirectory(prefix="lofi-radio-") as work:
        serve = _Serve(model_dir, variant, threads, Path(work), None)
        try:
            serve.call("generate", {"prompt": "warm up", "duration_sec": 5, "seed": 1})
            serve.until(_is("generation_complete"))
            asked = serve.call("radio_start", {"prompt": "lofi hip hop, jazzy piano", "seed": 4})
            seen = serve.until(_is("playback_start"))
            first_sound = seen[-1][0]
            cpu_before = cpu_seconds_by_role(serve.proc.pid)
            end = first_sound + minutes * 60
            seen += serve.until(lambda m: time.monotonic() >= end)
            cpu_after = cpu_seconds_by_role(serve.proc.pid)
            wall = time.monotonic() - first_sound
            serve.call("radio_stop", {})
        finally:
            serve.close()
    segments = [m["params"] for t, m in seen if m.get("method") == "radio_segment"]
    durations = {Path(s["path"]).stem: s["duration_sec"] for s in segments}
    heard: set[str] = set()
    again_sec = 0.0
    for t, m in seen:
        if m.get("method") == "playback_start" and t >= first_sound:
            piece = m["params"]["track_id"].rsplit("-", 1)[-1]
            if piece in heard:
                again_sec += durations.get(piece, 0.0)
            heard.add(piece)
    continuing = segments[1:]
    return {
        "variant": variant, "minutes": minutes, "first_sound_sec": first_sound - asked, "segments": len(segments),
        "new_music_sec": sum(s["duration_sec"] for s in segments),
        "continuing_rtf": sum(s["generation_time_sec"] for s in continuing) / max(sum(s["duration_sec"] for s in continuing), 1e-9),
        "rotation_sec": again_sec,
        "cores_used_by": {role: round((cpu_after[role] - cpu_before.get(role, 0.0)) / wall, 3) for role in cpu_after},
    }
