"""A child process of the service (the engine, the player): started on its first message, restarted after a
crash, a stall or for other settings, stopped on close.

It may run under another interpreter than the service (the plugin's .venv while the editor's host is the system
Python). One reader thread per process passes its events on; when the pipe closes, the process is gone. A
watchdog kills a child that stops sending its heartbeat.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Iterator

from lofi_engine.shared.errors import MODEL_LOAD_FAILED, LofiError
from lofi_engine.service.watched import Watched
from lofi_engine.shared.protocol import HEARTBEAT, SHUTDOWN

REPO_ROOT = str(Path(__file__).resolve().parents[2])
log = logging.getLogger("lofi.service")


class ChildLink(Watched):
    def __init__(
        self,
        name: str,
        target: Callable[..., None],
        python: str | None,
        log_path: Path,
        on_event: Callable[[str, dict], None],
        on_exit: Callable[[multiprocessing.process.BaseProcess], None],
    ) -> None:
        """``target(conn, cancel, settings, log_path, repo_root)`` runs in the child; ``on_event(name, fields)`` for
        each of its events and ``on_exit(process)`` when a process is gone, both from the reader thread (the caller
        takes its own lock and asks :meth:`crashed` whether it mattered)."""
        super().__init__(name)
        self.target = target
        self.python = python
        self.log_path = log_path
        self._on_event = on_event
        self._on_exit = on_exit
        self._conn: Connection | None = None
        self._cancel: Any = None  # a multiprocessing Event: stop the running (ACE-Step) job

    def send(self, message: Any, settings: dict[str, Any], stall_timeout_sec: float) -> None:
        """Send ``message`` to a child made from ``settings`` (restarting one made from other settings)."""
        if self.alive and self._settings != settings:
            log.info("settings changed: restarting the %s", self.name)
            self.stop()
        if not self.alive:
            self._start(settings, stall_timeout_sec)
        assert self._conn is not None
        self._cancel.clear()  # a cancel that came too late for the previous job is not this one's
        self._conn.send(message)

    def cancel_running(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the child to exit, then make sure it does (a running generation is abandoned)."""
        process, conn = self._process, self._conn
        self._process, self._conn, self._settings = None, None, None
        if process is None or conn is None:
            return
        try:
            conn.send(SHUTDOWN)
        except (OSError, ValueError):
            pass
        process.join(timeout=0.5)
        if process.is_alive():
            process.terminate()
            process.join(timeout)
        _end_group(process, timeout)

    def _start(self, settings: dict[str, Any], stall_timeout_sec: float) -> None:
        if self.python and not (os.path.isfile(self.python) and os.access(self.python, os.X_OK)):
            raise LofiError(
                MODEL_LOAD_FAILED,
                f"the {self.name}'s interpreter {self.python} is missing or not executable; run `make install` in the plugin's directory",
            )
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        cancel = context.Event()
        process = context.Process(
            target=self.target, args=(child_end, cancel, settings, str(self.log_path), REPO_ROOT), name=f"lofi-{self.name}", daemon=True
        )
        try:
            with _interpreter(self.python), _neutral_main():
                process.start()
        except OSError as exc:
            raise LofiError(MODEL_LOAD_FAILED, f"cannot start the {self.name} with {self.python or sys.executable}: {exc}") from None
        finally:
            child_end.close()
        self._process, self._conn, self._cancel, self._settings = process, parent_end, cancel, settings
        self._last_seen = None
        threading.Thread(target=self._read, args=(process, parent_end), name=f"lofi-{self.name}-reader", daemon=True).start()
        threading.Thread(target=self._watch, args=(process, stall_timeout_sec, lambda p: _end_group(p, 5.0)), name=f"lofi-{self.name}-watchdog",
                         daemon=True).start()
        log.info("%s process %s started", self.name, process.pid)

    def _read(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            self._heard_from(process)
            if message != HEARTBEAT:
                self._on_event(*message)
        process.join(timeout=5)
        conn.close()
        self._on_exit(process)


def _end_group(process: multiprocessing.process.BaseProcess, timeout: float) -> None:
    """Kill the child and everything in its process group (what it started: the player's mpv, stopped or not), and
    wait until none of them is left."""
    pid = process.pid
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        if process.is_alive():
            process.kill()
    process.join(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # its children are not ours to wait for: watch the group empty instead
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError, AttributeError):
            return
        time.sleep(0.02)
    log.warning("process group %s still has members %.0f s after it was killed", pid, timeout)


@contextmanager
def _interpreter(python: str | None) -> Iterator[None]:
    """Spawn under ``python`` (the plugin's .venv) without changing it for anyone else in this process."""
    from multiprocessing import spawn

    previous = spawn.get_executable()
    if python:
        spawn.set_executable(os.fsdecode(python))
    try:
        yield
    finally:
        spawn.set_executable(previous)


@contextmanager
def _neutral_main() -> Iterator[None]:
    """Hide this process's __main__ from spawn, which would otherwise re-run it (an editor's host script) in the child."""
    real = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = real
