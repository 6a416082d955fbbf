"""The engine client: queue, cache and consent on the caller's side, generation in one engine process.

Used in the editor's python3 host (through the remote plugin), by `lofi serve` and by tests; it needs only the
standard library. Requests are answered at once (FR-002); every event reaches ``on_event(name, params)`` from
one dispatcher thread, in order. The queue lives here, not in the engine process, so that when the engine dies
the running job fails with an error, the engine is restarted, and nothing queued is lost.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import secrets
import sys
import threading
import time
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Iterator

from lofi_engine.store.tracks import TrackCache
from lofi_engine.shared.settings import EngineConfig, default_state_dir
from lofi_engine.engine.entry import engine_main
from lofi_engine.shared.errors import CANCELLED, INVALID_PARAMS, NOT_CANCELLABLE, MODEL_DOWNLOAD_FAILED, MODEL_INFERENCE_FAILED, MODEL_LOAD_FAILED, MODEL_NOT_FOUND, QUEUE_FULL, LofiError
from lofi_engine.store.catalogue import ConsentStore, is_available, model_version
from lofi_engine.shared.track import track_id as make_track_id
from lofi_engine.shared.request import MAX_SEED, check_backend, check_duration, check_prompt, check_seed

MAX_PENDING = 10
PRIORITIES = ("normal", "high")
METHOD_NOT_FOUND = "METHOD_NOT_FOUND"
GENERATE_PARAMS = {"prompt", "duration_sec", "seed", "priority", "backend"}
REPO_ROOT = str(Path(__file__).resolve().parent.parent)
EventCallback = Callable[[str, dict], None]
log = logging.getLogger("lofi.client")


@dataclass
class Job:
    kind: str  # "generate" or "download"
    params: dict[str, Any]
    priority: str = "normal"
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    percent: int = 0
    eta_sec: float | None = None

    @property
    def track_id(self) -> str | None:
        return self.params.get("track_id")

    @property
    def needs_musicgen_download(self) -> bool:
        """Held by the MusicGen download question (ACE-Step downloads nothing; a download job is the answer)."""
        return self.kind == "generate" and self.params["backend"] == "musicgen"

    @property
    def cancellable_while_running(self) -> bool:
        """ACE-Step stops between (or inside) its steps; MusicGen cannot once started (FR-009)."""
        return self.kind == "generate" and self.params["backend"] == "ace-step"

    def view(self, position: int) -> dict[str, Any]:
        view = {"kind": self.kind, "position": position, "priority": self.priority, "percent": self.percent, "eta_sec": self.eta_sec}
        if self.kind == "generate":
            view.update({k: self.params[k] for k in ("track_id", "prompt", "duration_sec", "seed", "backend")})
        return view


class EngineClient:
    def __init__(
        self,
        config: EngineConfig,
        on_event: EventCallback,
        python: str | None = None,
        log_path: Path | None = None,
    ) -> None:
        """``python``: the interpreter that runs the engine (default: this one); ``log_path``: its log file."""
        self.config = config
        self.python = python
        self.log_path = log_path or default_state_dir() / "engine.log"
        self.model_version = model_version(config)
        """MusicGen's; ACE-Step's is read from its export's manifest at each request (it may be exported later)."""
        self.cache = TrackCache(config.cache_dir / "tracks", config.cache_max_bytes)
        self.consent = ConsentStore(config)
        self._on_event = on_event
        self._lock = threading.RLock()
        self._pending: list[Job] = []
        self._running: Job | None = None
        self._awaiting_consent: dict[str, Any] | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._closed = False
        self._events: queue.Queue[tuple[str, dict] | None] = queue.Queue()
        self._cancel_running: Any = None  # the engine's multiprocessing Event: stop the running ACE-Step job
        self._dispatcher = threading.Thread(target=self._dispatch_events, name="lofi-events", daemon=True)
        self._dispatcher.start()
        self.cache.root.mkdir(parents=True, exist_ok=True)
        self.cache.remove_stale_parts()

    # ---- requests -------------------------------------------------------------------------------------------

    def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Answer one request at once; raises LofiError with the spec's code."""
        handlers = {
            "generate": self._generate,
            "queue": lambda p: self._queue(),
            "download": self._download,
            "tracks": lambda p: self.cache.tracks(),
            "track_played": self._track_played,
            "status": lambda p: self._status(),
            "cancel": self._cancel,
        }
        if method not in handlers:
            raise LofiError(METHOD_NOT_FOUND, f"unknown method {method!r}; known: {', '.join(sorted(handlers))}")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise LofiError(INVALID_PARAMS, "params must be an object")
        with self._lock:
            if self._closed:
                raise LofiError(MODEL_INFERENCE_FAILED, "the engine client is closed")
            return handlers[method](params)

    def _generate(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - GENERATE_PARAMS)
        if unknown:
            raise LofiError(INVALID_PARAMS, f"unknown parameter {', '.join(unknown)} for generate")
        prompt = check_prompt(params.get("prompt"))
        backend = check_backend(params.get("backend", self.config.backend))
        duration = check_duration(params.get("duration_sec", 30), backend)
        seed = check_seed(params.get("seed"))
        priority = params.get("priority", "normal")
        if priority not in PRIORITIES:
            raise LofiError(INVALID_PARAMS, f"priority must be normal or high, not {priority!r}")
        if seed is None:
            seed = secrets.randbelow(MAX_SEED + 1)
        version = self.model_version if backend == "musicgen" else model_version(self.config, backend)
        tid = make_track_id(prompt, seed, duration, version, backend)

        cached = self.cache.get(tid)
        if cached is not None:
            self._emit("generation_complete", {**cached, "cached": True})
            return {"track_id": tid, "status": "cached", "position": 0, "seed": seed, "path": cached["path"]}
        for position, job in enumerate(self._jobs()):
            if job.track_id == tid:
                return {"track_id": tid, "status": "running" if job is self._running else "queued", "position": position, "seed": seed}
        if len(self._pending) >= MAX_PENDING:
            raise LofiError(QUEUE_FULL, f"{MAX_PENDING} requests are already waiting; try again when one finishes")

        params = {"track_id": tid, "prompt": prompt, "duration_sec": duration, "seed": seed, "backend": backend, "model_version": version}
        job = Job("generate", params, priority)
        if priority == "high":
            index = sum(1 for j in self._pending if j.priority == "high")  # ahead of every normal job, after earlier high ones
        else:
            index = len(self._pending)
        self._pending.insert(index, job)
        position = self._jobs().index(job)
        if self._awaiting_consent is not None and job.needs_musicgen_download:  # the queue waits for the answer: ask for this one too
            self._emit("consent_required", {**self._awaiting_consent, "track_id": tid})
        self._advance()
        return {"track_id": tid, "status": "queued", "position": position, "seed": seed}

    def _download(self, params: dict[str, Any]) -> dict[str, Any]:
        consent = params.get("consent")
        if not isinstance(consent, bool):
            raise LofiError(INVALID_PARAMS, "download needs consent: true (download now) or false (decline)")
        variant = self.config.variant
        self.consent.record(variant, consent)
        self._awaiting_consent = None
        if not consent:
            declined = [j for j in self._pending if j.needs_musicgen_download]
            self._pending = [j for j in self._pending if j not in declined]
            for job in declined:
                self._emit("generation_error", {"track_id": job.track_id, "code": MODEL_NOT_FOUND, "message": f"the {variant} model is not downloaded and its download was declined"})
            return {"status": "declined", "variant": variant}
        if is_available(self.config):
            self._advance()
            return {"status": "available", "variant": variant}
        if not any(j.kind == "download" for j in self._jobs()):
            self._pending.insert(0, Job("download", {}, "high"))
        self._advance()
        return {"status": "downloading", "variant": variant}

    def _cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        """Drop a queued job at once, or stop a running ACE-Step job between steps (or inside one): its requester
        gets `generation_error` CANCELLED. A running MusicGen job cannot be stopped (FR-009) and says so."""
        track_id = params.get("track_id")
        job = next((j for j in self._pending if j.kind == "generate" and j.track_id == track_id), None)
        if job is not None:
            self._pending.remove(job)
            self._emit("generation_error", {"track_id": track_id, "code": CANCELLED, "message": "cancelled before it started"})
            return {"track_id": track_id, "status": "cancelled"}
        if self._running is not None and self._running.track_id == track_id:
            if self._running.cancellable_while_running and self._cancel_running is not None:
                self._cancel_running.set()
                return {"track_id": track_id, "status": "cancelling"}
            raise LofiError(NOT_CANCELLABLE, "a MusicGen generation cannot be stopped once it has started (FR-009); it will finish")
        raise LofiError(INVALID_PARAMS, f"no queued generation {track_id!r}")

    def _track_played(self, params: dict[str, Any]) -> dict[str, Any]:
        meta = self.cache.touch(str(params.get("track_id")))
        if meta is None:
            raise LofiError(INVALID_PARAMS, f"no cached track {params.get('track_id')!r}")
        return meta

    def _queue(self) -> dict[str, Any]:
        jobs = self._jobs()
        views = [job.view(position) for position, job in enumerate(jobs)]
        running = views.pop(0) if self._running is not None else None
        return {"running": running, "pending": views, "awaiting_consent": self._awaiting_consent is not None}

    def _status(self) -> dict[str, Any]:
        return {
            "engine": "running" if self._process is not None and self._process.is_alive() else "stopped",
            "engine_pid": self._process.pid if self._process is not None else None,
            "model_version": self.model_version,
            "backend": self.config.backend,
            "variant": self.config.variant,
            "ace_step_model_dir": str(self.config.ace_step_dir),
            "ace_step_available": (self.config.ace_step_dir / "manifest.json").is_file(),
            "model_dir": str(self.config.model_dir) if self.config.model_dir else None,
            "model_available": is_available(self.config),
            "awaiting_consent": self._awaiting_consent is not None,
            "running": self._running.track_id if self._running else None,
            "pending": len(self._pending),
            "cache_dir": str(self.cache.root),
            "log_path": str(self.log_path),
        }

    def _jobs(self) -> list[Job]:
        return ([self._running] if self._running is not None else []) + self._pending

    # ---- the engine process ---------------------------------------------------------------------------------

    def _advance(self) -> None:
        """Start the next pending job when the engine is free (called with the lock held). While the user has not
        answered the MusicGen download question, ACE-Step jobs (which download nothing) go ahead of the waiting ones."""
        if self._closed or self._running is not None:
            return
        ready = [j for j in self._pending if self._awaiting_consent is None or not j.needs_musicgen_download]
        if not ready:
            return
        job = ready[0]
        self._pending.remove(job)
        job.started_at = time.time()
        self._running = job
        try:
            self._ensure_engine()
            assert self._conn is not None and self._cancel_running is not None
            self._cancel_running.clear()  # a cancel that came too late for the previous job is not this one's
            self._conn.send({"method": job.kind, "params": job.params})
        except LofiError as exc:
            self._finish_with_error(exc.code, exc.message)
        except (OSError, ValueError) as exc:
            self._finish_with_error(MODEL_LOAD_FAILED, f"the engine process ({self.python or sys.executable}) exited at once: {exc}; see {self.log_path}")

    def _ensure_engine(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        if self.python and not (os.path.isfile(self.python) and os.access(self.python, os.X_OK)):
            raise LofiError(
                MODEL_LOAD_FAILED,
                f"the engine's interpreter {self.python} is missing or not executable; run `make install` in the plugin's directory",
            )
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        cancel = context.Event()
        process = context.Process(
            target=engine_main,
            args=(child_end, cancel, self.config.to_dict(), str(self.log_path), REPO_ROOT),
            name="lofi-engine",
            daemon=True,
        )
        try:
            with _interpreter(self.python), _neutral_main():
                process.start()
        except OSError as exc:
            raise LofiError(MODEL_LOAD_FAILED, f"cannot start the engine with {self.python or sys.executable}: {exc}") from None
        finally:
            child_end.close()
        self._process, self._conn, self._cancel_running = process, parent_end, cancel
        threading.Thread(target=self._read_engine, args=(process, parent_end), name="lofi-engine-reader", daemon=True).start()
        log.info("engine process %s started", process.pid)

    def _read_engine(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        """The one thread reading the engine's events; on EOF the engine is gone."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                self._on_engine_message(message["method"], message["params"])
        process.join(timeout=5)
        with self._lock:
            conn.close()
            if self._process is process:
                self._process, self._conn = None, None
            if self._closed:
                return
            if self._running is not None:
                self._finish_with_error(
                    MODEL_INFERENCE_FAILED,
                    f"the engine crashed (exit code {process.exitcode}); it has been restarted; details in {self.log_path}",
                )
            self._advance()

    def _on_engine_message(self, method: str, params: dict[str, Any]) -> None:
        job = self._running
        if method == "generation_progress" and job is not None:
            job.percent, job.eta_sec = params["percent"], params["eta_sec"]
        if method == "consent_required":
            self._awaiting_consent = {k: v for k, v in params.items() if k != "track_id"}
            if job is not None:
                self._pending.insert(0, job)
                self._running = None
        if method in ("generation_complete", "generation_error", "download_complete", "download_error"):
            self._running = None
        if method == "generation_complete":
            self.cache.evict(keep=params["track_id"])
        self._emit(method, params)
        self._advance()

    def _finish_with_error(self, code: str, message: str) -> None:
        job, self._running = self._running, None
        if job is None:
            return
        if job.kind == "generate":
            self._emit("generation_error", {"track_id": job.track_id, "code": code, "message": message})
        else:
            self._emit("download_error", {"variant": self.config.variant, "code": MODEL_DOWNLOAD_FAILED, "message": message})

    # ---- events -----------------------------------------------------------------------------------------------

    def _emit(self, method: str, params: dict[str, Any]) -> None:
        self._events.put((method, params))

    def _dispatch_events(self) -> None:
        while True:
            item = self._events.get()
            if item is None:
                return
            try:
                self._on_event(*item)
            except Exception:
                log.exception("event handler failed for %s", item[0])

    # ---- shutdown -----------------------------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Stop the engine process (a running generation is abandoned) and the dispatcher."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            process, conn = self._process, self._conn
        if process is not None and conn is not None:
            try:
                conn.send({"method": "shutdown"})
            except (OSError, ValueError):
                pass
            process.join(timeout=0.5)
            if process.is_alive():
                process.terminate()
                process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(timeout)
        self._events.put(None)
        self._dispatcher.join(timeout)

    @property
    def engine_pid(self) -> int | None:
        with self._lock:
            return self._process.pid if self._process is not None else None


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
