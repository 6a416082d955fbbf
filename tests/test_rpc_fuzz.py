"""Issue 11, item 2: no input line may take `lofi serve` down or leave a request unanswered.

The real server (the tiny model, a strict UTF-8 locale) gets over 1 000 generated hostile lines (seeded): random
bytes, invalid UTF-8, lone surrogates (escaped and raw), any nesting, huge numbers, NaN, batches, wrong shapes,
path-like track ids, over-long lines, notifications, mutated requests, with valid `generate` requests interleaved.
Each line's reply (or, for a notification, the reply to the `status` sent after it) must arrive within 5 s, be
valid UTF-8 JSON-RPC 2.0 and, for an error, carry a spec code in `error.data.code`; every valid job must end in a
correct WAV; the server must still be there at the end and exit cleanly.
"""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from conftest import TINY

from lofi_engine.shared import errors

REPO = Path(__file__).resolve().parents[1]
SEED = 11
VALID_JOBS = 8
REPLY_TIMEOUT = 5.0
CODES = {v for k, v in vars(errors).items() if k.isupper() and isinstance(v, str)} | {"METHOD_NOT_FOUND"}
NO_REPLY = "none"  # a notification: nothing comes back
ANY = "any"  # a mutated line: at most one reply, whatever its id
HARMLESS = ("status", "queue", "tracks")
"""Methods whose success is no harm: a mutated line may turn out a valid call of one."""


def _strict(name: str) -> None:
    raise ValueError(f"{name} in a reply")


@dataclass
class Wire:
    """The server's stdout, read by a thread: every line is checked as UTF-8 JSON-RPC as it arrives."""

    proc: subprocess.Popen
    replies: "queue.Queue[dict[str, Any] | None]" = field(default_factory=queue.Queue)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    malformed: list[bytes] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                message = json.loads(raw.decode("utf-8"), parse_constant=_strict)
                assert isinstance(message, dict) and message.get("jsonrpc") == "2.0"
            except (UnicodeDecodeError, ValueError, AssertionError):
                self.malformed.append(raw)
                continue
            if "method" in message:
                with self.cond:
                    self.notifications.append(message)
                    self.cond.notify_all()
            else:
                self.replies.put(message)
        self.replies.put(None)  # the server's stdout closed

    def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def reply(self) -> dict[str, Any]:
        try:
            message = self.replies.get(timeout=REPLY_TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no reply within {REPLY_TIMEOUT} s") from None
        assert message is not None, "the server exited"
        return message

    def wait_notification(self, done, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not done(self.notifications):
                left = deadline - time.monotonic()
                assert left > 0 and self.proc.poll() is None, "jobs did not finish"
                self.cond.wait(left)


def request(method: Any, params: Any = None, id: Any = "x", **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if id is not None:
        message["id"] = id
    return {**message, **extra}


def dumps(message: Any) -> bytes:
    return json.dumps(message).encode("utf-8")  # ensure_ascii: a lone surrogate travels as "\ud800"


def hostile_lines(rng: random.Random) -> list[tuple[bytes, Any, bool]]:
    """(line, expected reply id | NO_REPLY | ANY, whether a result is acceptable), about a hundred of each kind."""
    cases: list[tuple[bytes, Any, bool]] = []
    n = 0

    def next_id() -> int:
        nonlocal n
        n += 1
        return 10_000 + n

    def add(message: dict[str, Any], valid_id: bool = True, may_succeed: bool = False) -> None:
        """A request whose id (if any) is echoed back, or (valid_id False) one refused with a null id."""
        if "id" not in message and valid_id:
            raw(dumps(message), NO_REPLY, False)
        else:
            raw(dumps(message), message.get("id") if valid_id else None, may_succeed)

    def raw(line: bytes, expected: Any, may_succeed: bool = False) -> None:
        cases.append((line, expected, may_succeed))

    surrogates = ["\ud800", "\udfff", "a\udc80b", "\ud83d", "x" * 50 + "\udbff"]
    deep = [1, 33, 200, 999, 5000]
    bad_ids = ["../../victim/x", "/tmp/v/x", "0123456789abcdeF", "0123456789abcde", "0123456789abcdef0", "..", "", "\x00" * 16, 42, None, ["a"]]
    huge = [10**400, -(10**400), 10**4000]  # within Python's 4 300-digit limit: parsed, then refused by value
    for _ in range(100):  # random bytes, no newline; blank lines are skipped without a reply
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))).replace(b"\n", b" ")
        raw(blob, NO_REPLY if not blob.strip() else None)
    for _ in range(80):  # invalid UTF-8 inside otherwise good JSON (raw surrogates, overlongs, stray bytes)
        bad = rng.choice([b"\xff", b"\xfe\xfe", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\x80"])
        raw(b'{"jsonrpc": "2.0", "method": "status", "id": 7, "params": {"x": "' + bad + b'"}}', None)
    for _ in range(100):  # lone surrogates as escapes: in the id, the method, a key, a value
        s = rng.choice(surrogates)
        where = rng.randrange(5)
        if where == 0:
            add(request("status", id=s), valid_id=False)
        elif where == 1:
            add(request(s, id=next_id()))
        elif where == 2:
            add(request("generate", {s: 1, "prompt": "x", "duration_sec": 5}, id=next_id()))
        elif where == 3:
            add(request("generate", {"prompt": s, "duration_sec": 5}, id=next_id()))
        else:
            add(request("track_played", {"track_id": s}, id=None))  # a notification: no reply
    for _ in range(100):  # nesting, at the top and inside params
        depth = rng.choice(deep)
        kind = rng.randrange(4)
        if kind == 0:
            raw(b"[" * depth, None)
        elif kind == 1:
            raw(b'{"a":' * depth + b"1" + b"}" * depth, None)  # no method (or too deep): a null id
        elif kind == 2:
            i = next_id()
            value = "[" * depth + "]" * depth
            line = f'{{"jsonrpc": "2.0", "method": "generate", "id": {i}, "params": {{"prompt": {value}, "duration_sec": 5}}}}'.encode()
            raw(line, i if depth < 999 else None)
        else:
            i = next_id()
            value = '{"a":' * depth + "0" + "}" * depth
            line = f'{{"jsonrpc": "2.0", "method": "cancel", "id": {i}, "params": {{"track_id": {value}}}}}'.encode()
            raw(line, i if depth < 999 else None)
    for _ in range(100):  # huge and non-finite numbers
        kind = rng.randrange(7)
        i = next_id()
        big = rng.choice(huge)
        if kind == 0:
            add(request("status", id=big), may_succeed=True)  # a huge id is still a number: echoed back
        elif kind == 1:
            add(request("generate", {"prompt": "x", "duration_sec": big}, id=i))
        elif kind == 2:
            add(request("generate", {"prompt": "x", "duration_sec": 5, "seed": big}, id=i))
        elif kind == 6:  # past the digit limit: not parsed at all
            raw(b'{"jsonrpc": "2.0", "method": "status", "id": 1' + b"0" * 5000 + b"}", None)
        elif kind == 3:
            raw(f'{{"jsonrpc": "2.0", "method": "generate", "id": {i}, "params": {{"prompt": "x", "duration_sec": 1e400}}}}'.encode(), i)
        elif kind == 4:
            constant = rng.choice(["NaN", "Infinity", "-Infinity"])
            raw(f'{{"jsonrpc": "2.0", "method": "generate", "id": {i}, "params": {{"prompt": "x", "duration_sec": {constant}}}}}'.encode(), None)
        else:
            raw('{"jsonrpc": "2.0", "method": "status", "id": 1e400}'.encode(), None)
    for _ in range(60):  # batches
        size = rng.randrange(4)
        raw(dumps([request("status", id=next_id()) for _ in range(size)]), None)
    for _ in range(140):  # wrong shapes
        i = next_id()
        kind = rng.randrange(10)
        if kind == 0:
            add(request("generate", rng.choice([["x"], "x", 5, True]), id=i))
        elif kind == 1:
            add(request(rng.choice([5, None, ["status"], {"m": 1}]), id=i))
        elif kind == 2:
            add({"jsonrpc": "2.0", "id": i})  # no method
        elif kind == 3:
            add(request("status", id=rng.choice([{"a": 1}, [1], True, False])), valid_id=False)
        elif kind == 4:
            add(request("status", id=i, jsonrpc=rng.choice(["1.0", 2, None, "2.0 "])))
        elif kind == 5:
            raw(dumps(rng.choice([5, "status", None, True, 1.5])), None)
        elif kind == 6:
            add({"method": 5}, valid_id=False)  # not a request, even without an id: refused with a null id
        elif kind == 7:
            add(request("no_such_method", id=i))
        elif kind == 8:
            add(request("generate", {"prompt": "x", "duration_sec": rng.choice([0, -5, 121, "30", True, [], {}])}, id=i))
        else:
            add(request("download", {"consent": rng.choice(["yes", 1, None, [], "false"])}, id=i))
    for _ in range(100):  # path-like and malformed track ids at every method that takes one
        method = rng.choice(["track_played", "cancel"])
        add(request(method, {"track_id": rng.choice(bad_ids)}, id=next_id()))
    for _ in range(60):  # notifications: valid shape, no id, never a reply (errors included)
        params = rng.choice([{}, {"track_id": "../x"}, {"prompt": 5}, {"consent": "maybe"}])
        add(request(rng.choice(["status", "queue", "tracks", "no_such", "track_played", "generate", "download"]), params, id=None))
    for _ in range(200):  # mutated requests of harmless methods: anything may come of them, but at most one reply
        line = bytearray(dumps(request(rng.choice(["status", "queue", "tracks"]), {}, id=next_id())))
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(line))
            op = rng.randrange(3)
            if op == 0:
                line[at] = rng.randrange(256)
            elif op == 1:
                line.insert(at, rng.randrange(256))
            else:
                del line[at]
        raw(bytes(line).replace(b"\n", b" "), ANY)
    raw(b"\xef\xbb\xbf" + dumps(request("status", id=1)), None)  # a BOM
    raw(b"x" * (2 << 20), None)  # over the line limit
    raw(b'{"jsonrpc": "2.0", "method": "status", "id": 3, "pad": "' + b"y" * (1 << 20) + b'"}', None)
    raw(b"   \t  ", NO_REPLY)
    rng.shuffle(cases)
    return cases


def check_error(message: dict[str, Any]) -> str:
    error = message["error"]
    assert isinstance(error["code"], int) and isinstance(error["message"], str), message
    assert error["data"]["code"] in CODES, message
    return error["data"]["code"]


def test_a_thousand_hostile_lines_never_take_the_server_down(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    cases = hostile_lines(rng)
    assert len(cases) >= 1000
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8:strict", "PYTHONUTF8": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lofi_engine", "serve", "--model-dir", str(TINY), "--cache-dir", str(tmp_path / "cache")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env,
    )
    stderr: list[bytes] = []
    threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    wire = Wire(proc)
    wire.start()
    started = time.monotonic()
    counts = {"sent": 0, "replies": 0, "errors_without_code": 0, "internal_errors": 0, "slowest_sec": 0.0}
    jobs: dict[str, int] = {}
    every = len(cases) // (VALID_JOBS + 1)
    try:
        for index, (line, expected, may_succeed) in enumerate(cases):
            if index % every == every - 1 and len(jobs) < VALID_JOBS:
                seed = len(jobs) + 1
                wire.send(dumps(request("generate", {"prompt": f"fuzz job {seed}", "duration_sec": 5, "seed": seed}, id=f"job-{seed}")))
                answer = wire.reply()
                assert answer.get("id") == f"job-{seed}" and answer["result"]["status"] == "queued", answer
                jobs[answer["result"]["track_id"]] = seed
            sent_at = time.monotonic()
            wire.send(line)
            counts["sent"] += 1
            got: list[dict[str, Any]] = []
            if expected in (NO_REPLY, ANY):  # synchronise on the reply to a status request sent after it
                sync = f"sync-{index}"
                wire.send(dumps(request("status", id=sync)))
                while True:
                    message = wire.reply()
                    if message.get("id") == sync:
                        break
                    got.append(message)
                assert len(got) == (0 if expected == NO_REPLY else len(got)) and len(got) <= 1, (line[:200], got)
            else:
                got.append(wire.reply())
                assert got[0].get("id") == expected, (line[:200], got[0])
            counts["slowest_sec"] = max(counts["slowest_sec"], time.monotonic() - sent_at)
            for message in got:
                counts["replies"] += 1
                assert set(message) == {"jsonrpc", "id", "error"} or set(message) == {"jsonrpc", "id", "result"}, message
                if "error" in message:
                    if not isinstance(message["error"].get("data"), dict) or "code" not in message["error"]["data"]:
                        counts["errors_without_code"] += 1
                    code = check_error(message)
                    counts["internal_errors"] += code == errors.INTERNAL_ERROR
                elif expected is not ANY and not may_succeed:
                    raise AssertionError(f"a hostile line was accepted: {line[:200]!r} -> {message}")
        assert proc.poll() is None, "the server exited"
        wire.wait_notification(lambda events: {e["params"]["track_id"] for e in events if e["method"] in ("generation_complete", "generation_error")} >= set(jobs))
        finished = {e["params"]["track_id"]: e for e in wire.notifications if e["method"] in ("generation_complete", "generation_error")}
        lost = [tid for tid in jobs if finished[tid]["method"] != "generation_complete"]
        assert not lost, [finished[t] for t in lost]
        for tid in jobs:
            params = finished[tid]["params"]
            path = Path(params["path"])
            assert path.resolve() == (tmp_path / "cache" / "tracks" / f"{tid}.wav").resolve()
            audio, rate = soundfile.read(path, dtype="float32")
            assert rate == 32000 and audio.ndim == 1 and len(audio) == 5 * 32000
            assert np.isfinite(audio).all() and np.abs(audio).max() > 0
        wire.send(dumps(request("shutdown", id="bye")))
        assert wire.reply()["result"] == {"status": "shutting_down"}
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"\nfuzz: {counts['sent']} hostile lines, {len(jobs)} valid jobs, {counts['replies']} replies, "
          f"slowest {counts['slowest_sec']:.2f} s, {time.monotonic() - started:.1f} s in all")
    assert not wire.malformed, wire.malformed[:3]
    assert counts["errors_without_code"] == 0 and counts["internal_errors"] == 0, counts
    assert b"Traceback" not in b"".join(stderr), b"".join(stderr)[-3000:].decode("utf-8", "replace")
