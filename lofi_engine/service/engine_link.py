"""The engine process: started on the first job, restarted after a crash or for other settings, stopped on close.

It may run under another interpreter than the service (the plugin's .venv while the editor's host is the system
Python). One reader thread per process passes its events on; when the pipe closes, the process is gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time
import types
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Iterator

from lofi_engine.engine.entry import engine_main
from lofi_engine.shared.errors import MODEL_LOAD_FAILED, LofiError
from lofi_engine.shared.protocol import HEARTBEAT, HEARTBEAT_SEC, SHUTDOWN, Job
from lofi_engine.shared.settings import EngineConfig

REPO_ROOT = str(Path(__file__).resolve().parents[2])
log = logging.getLogger("lofi.service")


class EngineLink:
    def __init__(
        self,
        python: str | None,
        log_path: Path,
        on_event: Callable[[str, dict], None],
        on_exit: Callable[[multiprocessing.process.BaseProcess], None],
    ) -> None:
        """``on_event(name, fields)`` for each engine event and ``on_exit(process)`` when a process is gone, both
        from the reader thread; the caller takes its own lock and asks :meth:`crashed` whether it mattered."""
        self.python = python
        self.log_path = log_path
        self._on_event = on_event
        self._on_exit = on_exit
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._cancel: Any = None  # a multiprocessing Event: stop the running (ACE-Step) job
        self._config: EngineConfig | None = None
        self._last_seen: float | None = None  # monotonic time of the engine's last message; None until its first
        self._stalled: set[int] = set()  # pids the watchdog killed

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def send(self, job: Job, config: EngineConfig) -> None:
        """Run ``job`` in an engine made from ``config`` (restarting one made from other settings)."""
        if self.alive and self._config != config:
            log.info("settings changed: restarting the engine")
            self.stop()
        if not self.alive:
            self._start(config)
        assert self._conn is not None
        self._cancel.clear()  # a cancel that came too late for the previous job is not this one's
        self._conn.send(job)

    def cancel_running(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the engine to exit, then make sure it does; a running generation is abandoned."""
        process, conn = self._process, self._conn
        self._process, self._conn, self._config = None, None, None
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
        if process.is_alive():
            process.kill()
            process.join(timeout)

    def _start(self, config: EngineConfig) -> None:
        if self.python and not (os.path.isfile(self.python) and os.access(self.python, os.X_OK)):
            raise LofiError(
                MODEL_LOAD_FAILED,
                f"the engine's interpreter {self.python} is missing or not executable; run `make install` in the plugin's directory",
            )
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        cancel = context.Event()
        process = context.Process(
            target=engine_main, args=(child_end, cancel, config.to_dict(), str(self.log_path), REPO_ROOT), name="lofi-engine", daemon=True
        )
        try:
            with _interpreter(self.python), _neutral_main():
                process.start()
        except OSError as exc:
            raise LofiError(MODEL_LOAD_FAILED, f"cannot start the engine with {self.python or sys.executable}: {exc}") from None
        finally:
            child_end.close()
        self._process, self._conn, self._cancel, self._config = process, parent_end, cancel, config
        self._last_seen = None
        threading.Thread(target=self._read, args=(process, parent_end), name="lofi-engine-reader", daemon=True).start()
        threading.Thread(target=self._watch, args=(process, config.stall_timeout_sec), name="lofi-engine-watchdog", daemon=True).start()
        log.info("engine process %s started", process.pid)

    def _read(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if self._process is process:
                self._last_seen = time.monotonic()
            if message != HEARTBEAT:
                self._on_event(*message)
        process.join(timeout=5)
        conn.close()
        self._on_exit(process)

    def stalled(self, process: multiprocessing.process.BaseProcess) -> bool:
        """Whether the watchdog ended ``process`` for going silent."""
        return process.pid in self._stalled

    def _watch(self, process: multiprocessing.process.BaseProcess, timeout: float) -> None:
        """Kill an engine that has sent nothing for ``timeout`` seconds since its first sign of life (stopped, frozen
        or swapped to death); its reader then reports it gone like a crash."""
        while self._process is process and process.is_alive():
            time.sleep(HEARTBEAT_SEC / 2)
            last = self._last_seen
            if last is not None and self._process is process and time.monotonic() - last > timeout:
                log.warning("engine %s sent nothing for %.0f s: restarting it", process.pid, timeout)
                self._stalled.add(process.pid)
                process.kill()
                return

    def crashed(self, process: multiprocessing.process.BaseProcess) -> bool:
        """Whether ``process`` ended without being stopped (then it is forgotten, and the next job starts another)."""
        if self._process is not process:
            return False
        self._process, self._conn, self._config = None, None, None
        return True


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
    """Hide this process's __main__ from spawn, which would otherwise re-run it (an editor's host script) in the engine."""
    real = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = real
