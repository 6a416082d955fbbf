"""`make soak`: the radio and the player under periodic faults, for minutes, through the real `lofi serve`.

The server runs the tiny model with the real player process and mpv (null audio output). Every ``period`` seconds
one fault, in turn:

- mpv stopped (SIGSTOP) for 3 s and continued; then pause and resume must be obeyed;
- the engine killed (SIGKILL); the radio must bring a segment again;
- the track cache's disk filled to the last byte (a tmpfs, where this user may mount one) and freed after the radio
  said it cannot write; the radio must bring a segment again by itself.

It samples the player process's memory (RSS) all along, and at the end lists what is still alive of every process
the server ever had (orphans). The report is JSON (``--report``) and a summary on stdout; the exit status is 1 when
a fault was not recovered from, a process was left behind, the server's exit was not clean, an error had no code, or
the player's memory grew (more than ``MAX_RSS_GROWTH_MB`` from the first third of the run to the last).

    python tests/soak.py --minutes 10 --report soak-results.json
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from lofi_engine.dev.processes import descendants, pid_alive

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "fixtures" / "musicgen-tiny"
PLAYER = "mpv --no-config --really-quiet --no-video --ao=null"
FAULTS = ("mpv_stopped", "engine_killed", "disk_full")
RECOVERY_TIMEOUT_SEC = 120
"""A fault not recovered from within this long is reported as such (a guard against hanging, not a speed check)."""
MAX_RSS_GROWTH_MB = 25.0
EXIT_GRACE_SEC = 10.0  # how long the server's former processes may take to follow it out
CODED = {"WRITE_FAILED", "MODEL_INFERENCE_FAILED", "CANCELLED", "PLAYBACK_FAILED"}
"""The codes a radio or player error may carry under these faults; anything else is a bug."""


@dataclass
class Fault:
    kind: str
    at_sec: float
    recovered_after_sec: float | None = None
    note: str = ""


@dataclass
class Report:
    minutes: float
    disk: str
    faults: list[Fault] = field(default_factory=list)
    player_rss_mb: list[tuple[float, float]] = field(default_factory=list)
    rss_growth_mb: float | None = None
    segments: int = 0
    orphans: list[str] = field(default_factory=list)
    server_exit: int | None = None
    uncoded_errors: list[dict] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = [f"{f.kind} at {f.at_sec:.0f} s: not recovered ({f.note})" for f in self.faults if f.recovered_after_sec is None and not f.note.startswith("skipped")]
        if self.orphans:
            found.append(f"left behind: {self.orphans}")
        if self.server_exit != 0:
            found.append(f"the server exited with {self.server_exit}")
        if self.uncoded_errors:
            found.append(f"errors without an expected code: {self.uncoded_errors}")
        if self.tracebacks:
            found.append(f"tracebacks on stderr: {self.tracebacks[:3]}")
        if self.rss_growth_mb is None or self.rss_growth_mb > MAX_RSS_GROWTH_MB:
            found.append(f"the player's memory grew by {self.rss_growth_mb} MB (at most {MAX_RSS_GROWTH_MB})")
        return found


class Server:
    """`lofi serve` with a reader thread: answers by id, notifications kept in order, waits on them."""

    def __init__(self, cache: Path, state: Path) -> None:
        argv = [
            sys.executable, "-m", "lofi_engine", "serve", "--model-dir", str(TINY), "--cache-dir", str(cache),
            "--optimized-cache", "false", "--cache-max-bytes", str(24 * 2**20), "--player-command", PLAYER,
            "--radio-window-sec", "6", "--radio-context-sec", "2", "--stall-timeout-sec", "10",
        ]
        env = {**os.environ, "XDG_STATE_HOME": str(state)}
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
        self.events: list[dict] = []
        self._answers: dict[int, queue.Queue] = {}
        self._changed = threading.Condition()
        self._next_id = 0
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()  # type: ignore[arg-type]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            if "id" in message and message["id"] in self._answers:
                self._answers[message["id"]].put(message)
            else:
                with self._changed:
                    self.events.append({"t": time.monotonic(), **message})
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def call(self, method: str, params: dict | None = None) -> dict:
        self._next_id += 1
        answer: queue.Queue = queue.Queue()
        self._answers[self._next_id] = answer
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": method, "params": params or {}, "id": self._next_id}) + "\n")
        self.proc.stdin.flush()
        return answer.get(timeout=RECOVERY_TIMEOUT_SEC)

    def wait(self, found: Callable[[dict], bool], after: int = 0, timeout: float = RECOVERY_TIMEOUT_SEC) -> dict | None:
        """The first notification from number ``after`` on that ``found`` accepts; None if none came in time."""
        end = time.monotonic() + timeout
        with self._changed:
            while True:
                for message in self.events[after:]:
                    if found(message):
                        return message
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self._changed.wait(left)

    def mark(self) -> int:
        with self._changed:
            return len(self.events)

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.call("shutdown")
            except Exception:
                pass
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)


def is_event(name: str, **fields: Any) -> Callable[[dict], bool]:
    return lambda m: m.get("method") == name and all(m["params"].get(k) == v for k, v in fields.items())


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def mpv_and_player(server: Server) -> tuple[int | None, int | None]:
    """The audio player (mpv) and the player process that feeds it (mpv's parent)."""
    for pid, argv in descendants(server.proc.pid).items():
        if argv and os.path.basename(argv[0]) == "mpv" and pid_alive(pid):
            try:
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                return pid, None
            return pid, parent
    return None, None


class SmallDisk:
    """The track cache on a tmpfs of its own (root, or any user allowed to mount); else a plain folder and the
    disk fault is skipped with the reason."""

    def __init__(self, where: Path, size: str = "64M") -> None:
        self.where = where
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
        self.mounted = done.returncode == 0
        self.description = f"a {size} tmpfs" if self.mounted else f"no disk fault: mounting a tmpfs was refused ({done.stderr.strip() or done.returncode})"

    def fill(self) -> Path:
        filler = self.where / "filler"
        with open(filler, "wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * 2**20)
                    handle.flush()
            except OSError:
                pass
        return filler

    def close(self) -> None:
        if self.mounted and subprocess.run(["umount", str(self.where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.where)], check=False)


def inject(kind: str, server: Server, disk: SmallDisk) -> tuple[bool, str]:
    """One fault and the wait for the service to be whole again: (recovered, note)."""
    mark = server.mark()
    if kind == "mpv_stopped":
        mpv, _ = mpv_and_player(server)
        if mpv is None:
            return False, "no mpv to stop"
        os.kill(mpv, signal.SIGSTOP)
        time.sleep(3)
        os.kill(mpv, signal.SIGCONT)
        mark = server.mark()
        server.call("pause")
        if server.wait(is_event("playback_state", state="paused"), after=mark) is None:
            return False, "pause not obeyed after the stall"
        mark = server.mark()
        server.call("resume")
        if server.wait(is_event("playback_state", state="playing"), after=mark) is None:
            return False, "resume not obeyed after the stall"
        return True, ""
    if kind == "engine_killed":
        pid = server.call("status")["result"].get("engine_pid")
        if pid is None:
            return False, "no engine to kill"
        os.kill(pid, signal.SIGKILL)
        if server.wait(is_event("radio_segment"), after=mark) is None:
            return False, "no radio segment after the kill"
        return True, f"engine {pid} killed"
    if not disk.mounted:
        return False, f"skipped: {disk.description}"
    filler = disk.fill()
    said = server.wait(lambda m: is_event("radio_error", code="WRITE_FAILED")(m) or is_event("radio_state", mode="waiting for disk space")(m), after=mark)
    filler.unlink()
    if said is None:
        return False, "the radio never said it could not write"
    mark = server.mark()
    if server.wait(is_event("radio_segment"), after=mark) is None:
        return False, "no radio segment after the disk was freed"
    return True, ""


def soak(minutes: float, period: float, work: Path) -> Report:
    disk = SmallDisk(work / "cache")
    report = Report(minutes=minutes, disk=disk.description)
    seen: dict[int, list[str]] = {}
    server = Server(disk.where, work / "state")
    start = time.monotonic()
    try:
        server.call("radio_start", {"prompt": "lofi soak", "seed": 1})
        if server.wait(is_event("playback_start")) is None:
            raise RuntimeError(f"the radio never played: {server.stderr[-2000:]}")
        next_fault, turn = start + period, 0
        while time.monotonic() - start < minutes * 60:
            seen.update(descendants(server.proc.pid))
            _, player = mpv_and_player(server)
            if player is not None and (mb := rss_mb(player)) is not None:
                report.player_rss_mb.append((round(time.monotonic() - start, 1), round(mb, 1)))
            if time.monotonic() >= next_fault:
                kind = FAULTS[turn % len(FAULTS)]
                fault = Fault(kind, round(time.monotonic() - start, 1))
                began = time.monotonic()
                recovered, fault.note = inject(kind, server, disk)
                fault.recovered_after_sec = round(time.monotonic() - began, 1) if recovered else None
                report.faults.append(fault)
                turn += 1
                next_fault = time.monotonic() + period
            time.sleep(1)
        server.call("radio_stop")
    finally:
        seen.update(descendants(server.proc.pid))
        report.server_exit = server.close()
        disk.close()
    left = still_alive_after_exit(seen)
    report.orphans = [f"{pid} {' '.join(argv)[:120]}" for pid, argv in seen.items() if pid in left]
    report.segments = sum(1 for m in server.events if m.get("method") == "radio_segment")
    report.uncoded_errors = [m["params"] for m in server.events if m.get("method") in ("radio_error", "generation_error") and m["params"].get("code") not in CODED]
    report.uncoded_errors += [m["params"] for m in server.events if m.get("method") == "playback_end" and m["params"].get("reason") == "error" and m["params"].get("code") not in CODED]
    report.tracebacks = [line for line in server.stderr.splitlines() if "Traceback" in line]
    report.rss_growth_mb = rss_growth(report.player_rss_mb)
    return report


def still_alive_after_exit(pids: Iterable[int]) -> set[int]:
    """The server's former processes still there once they had time to see it gone: its helpers (multiprocessing's
    resource tracker) end when the server's end of their pipe closes, a moment after the server itself."""
    end = time.monotonic() + EXIT_GRACE_SEC
    alive = {pid for pid in pids if pid_alive(pid)}
    while alive and time.monotonic() < end:
        time.sleep(0.1)
        alive = {pid for pid in alive if pid_alive(pid)}
    return alive


def rss_growth(samples: list[tuple[float, float]]) -> float | None:
    """Median RSS of the last third of the run minus that of the first third."""
    if len(samples) < 6:
        return None
    third = len(samples) // 3
    first, last = sorted(mb for _, mb in samples[:third]), sorted(mb for _, mb in samples[-third:])
    return round(last[len(last) // 2] - first[len(first) // 2], 1)


def summary(report: Report) -> str:
    lines = [f"soak: {report.minutes} min, {report.segments} radio segments, disk: {report.disk}"]
    for f in report.faults:
        after = f"recovered in {f.recovered_after_sec} s" if f.recovered_after_sec is not None else "NOT RECOVERED"
        lines.append(f"  {f.at_sec:7.1f} s  {f.kind:14} {after} {f.note}")
    if report.player_rss_mb:
        rss = [mb for _, mb in report.player_rss_mb]
        lines.append(f"player RSS: {rss[0]:.1f} MB at the start, {min(rss):.1f}–{max(rss):.1f} MB, {rss[-1]:.1f} MB at the end; growth (median, last third − first third) {report.rss_growth_mb} MB")
    lines.append(f"orphans at the end: {len(report.orphans)}{': ' + '; '.join(report.orphans) if report.orphans else ''}")
    lines.append("OK" if not report.problems else "PROBLEMS:\n  " + "\n  ".join(report.problems))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--period", type=float, default=30.0, help="seconds between faults")
    parser.add_argument("--report", type=Path, help="write the report as JSON here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lofi-soak-"))
    try:
        report = soak(args.minutes, args.period, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.report:
        args.report.write_text(json.dumps({**asdict(report), "problems": report.problems}, indent=1))
    print(summary(report))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
