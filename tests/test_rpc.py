"""`lofi serve`: the spec's JSON-RPC contract over stdio, driven like an editor or script would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY

REPO = Path(__file__).resolve().parents[1]


class Server:
    def __init__(self, cache: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lofi_engine", "serve", "--model-dir", str(TINY), "--cache-dir", str(cache), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, "XDG_STATE_HOME": str(cache / "state")},
        )
        self.lines: list[dict] = []

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def call(self, method: str, params=None, id: int = 1) -> dict:
        self.send(json.dumps({"jsonrpc": "2.0", "method": method, "params": params or {}, "id": id}))
        return self.read_until(lambda m: m.get("id") == id)

    def read_until(self, done, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            assert line, f"server exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
            message = json.loads(line)
            assert message["jsonrpc"] == "2.0"
            self.lines.append(message)
            if done(message):
                return message
        raise AssertionError("timed out")

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.stdin.close()
        return self.proc.wait(timeout=30)


@pytest.fixture
def server(tmp_path: Path):
    s = Server(tmp_path / "cache")
    yield s
    s.close()


def test_spec_example_end_to_end(server: Server) -> None:
    """The spec's request, immediate response, progress notifications and complete, in that order."""
    response = server.call("generate", {"prompt": "lofi hip hop, jazzy piano", "duration_sec": 30, "seed": 42, "priority": "normal"})
    assert set(response) == {"jsonrpc", "id", "result"}
    assert response["result"]["status"] == "queued" and response["result"]["position"] == 0 and response["result"]["seed"] == 42
    assert server.lines == [response]  # answered at once: before the engine (started by this request) said anything
    tid = response["result"]["track_id"]
    done = server.read_until(lambda m: m.get("method") == "generation_complete")
    methods = [m["method"] for m in server.lines if "method" in m]
    assert methods[0] == "generation_start" and methods[-1] == "generation_complete"
    progress = [m["params"] for m in server.lines if m.get("method") == "generation_progress"]
    assert len(progress) == 20 and all(set(p) == {"track_id", "percent", "tokens_generated", "tokens_estimated", "eta_sec"} for p in progress)
    assert [p["percent"] for p in progress] == list(range(5, 100, 5)) + [99] and progress[-1]["tokens_generated"] == 1503
    assert set(done["params"]) >= {"track_id", "path", "duration_sec", "sample_rate", "prompt", "seed", "generation_time_sec", "model_version"}
    assert done["params"]["track_id"] == tid and done["params"]["duration_sec"] == 30.0
    again = server.call("generate", {"prompt": "lofi hip hop, jazzy piano", "duration_sec": 30, "seed": 42}, id=2)
    assert again["result"]["status"] == "cached"
    cached = server.read_until(lambda m: m.get("method") == "generation_complete")
    assert cached["params"]["cached"] is True and server.lines.index(again) < server.lines.index(cached)


def test_bad_input_gets_json_rpc_errors_and_the_server_keeps_serving(server: Server) -> None:
    server.send("{this is not json")
    assert server.read_until(lambda m: "error" in m)["error"]["code"] == -32700
    server.send('["not", "an", "object"]')
    assert server.read_until(lambda m: "error" in m)["error"]["code"] == -32600
    assert server.call("no_such_method", id=3)["error"]["code"] == -32601
    server.send(json.dumps({"jsonrpc": "2.0", "method": "generate", "params": ["x"], "id": 4}))
    assert server.read_until(lambda m: m.get("id") == 4)["error"]["code"] == -32602
    wrong_type = server.call("generate", {"prompt": 42}, id=5)["error"]
    assert wrong_type["code"] == -32602 and wrong_type["data"]["code"] == "INVALID_PROMPT"
    duration = server.call("generate", {"prompt": "x", "duration_sec": 200}, id=6)["error"]
    assert duration["code"] == -32602 and duration["data"]["code"] == "INVALID_DURATION"
    priority = server.call("generate", {"prompt": "x", "priority": 3}, id=7)["error"]
    assert priority["code"] == -32602 and priority["data"]["code"] == "INVALID_PARAMS"
    status = server.call("status", id=8)["result"]
    assert status["engine"] == "stopped" and status["pending"] == 0
    assert server.call("queue", id=9)["result"] == {"running": None, "pending": [], "awaiting_consent": False}


def test_queue_full_over_rpc(server: Server) -> None:
    for i in range(11):
        assert "result" in server.call("generate", {"prompt": f"p{i}", "duration_sec": 5, "seed": i}, id=i + 1)
    full = server.call("generate", {"prompt": "eleventh pending", "duration_sec": 5}, id=99)["error"]
    assert full["code"] == -32000 and full["data"]["code"] == "QUEUE_FULL"


def test_shutdown_and_end_of_input_exit_cleanly(tmp_path: Path) -> None:
    server = Server(tmp_path / "a")
    assert server.call("shutdown")["result"] == {"status": "shutting_down"}
    assert server.proc.wait(timeout=30) == 0
    other = Server(tmp_path / "b")
    assert other.close() == 0


def test_player_radio_and_library_over_json_rpc(tmp_path: Path) -> None:
    """Issue 13 over `lofi serve`: a track generated, played (to a file), paused, its volume set, the library read,
    the radio started and stopped; bad input gets the spec's codes."""
    out = tmp_path / "out.wav"
    s = Server(tmp_path / "cache", "--player-command", f"mpv --no-config --really-quiet --no-video --ao=pcm --ao-pcm-file={out}",
               "--radio-window-sec", "6", "--radio-context-sec", "2")
    try:
        tid = s.call("generate", {"prompt": "rain", "duration_sec": 5, "seed": 1})["result"]["track_id"]
        s.read_until(lambda m: m.get("method") == "generation_complete")
        assert s.call("play", {"track_id": tid}, id=2)["result"]["track_id"] == tid
        s.read_until(lambda m: m.get("method") == "playback_start")
        paused = s.call("pause", id=3)["result"]
        assert paused["sent"] == "pause" and paused["track_id"] == tid and paused["prompt"] == "rain"
        assert s.read_until(lambda m: m.get("method") == "playback_pause")["params"]["track_id"] == tid
        assert s.call("volume", {"level": 40}, id=4)["result"] == {"sent": "settings", "volume": 40, "limited": False}
        bad = s.call("volume", {"level": 150}, id=5)["error"]
        assert bad["code"] == -32602 and bad["data"]["code"] == "INVALID_PARAMS"
        missing = s.call("play", {"track_id": "0" * 16}, id=6)["error"]
        assert missing["data"]["code"] == "TRACK_NOT_FOUND"
        assert [t["track_id"] for t in s.call("cache_list", id=7)["result"]] == [tid]
        assert s.call("cache_stats", id=8)["result"]["count"] == 1
        radio = s.call("radio_start", {"prompt": "rain", "seed": 3}, id=9)["result"]
        assert radio["active"] and radio["strategy"] == "continue"
        s.read_until(lambda m: m.get("method") == "radio_segment")
        assert s.call("radio_stop", id=10)["result"] == {"active": False}
        s.read_until(lambda m: m.get("method") == "radio_state" and not m["params"]["active"])
    finally:
        assert s.close() == 0
