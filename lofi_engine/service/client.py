"""The engine client: requests answered at once on the caller's side, generation in one engine process.

Used in the editor's python3 host (through the remote plugin), by `lofi serve` and by tests; it needs only the
standard library. Every event reaches ``on_event(name, fields)`` from one dispatcher thread, in order. The queue
lives here, not in the engine process, so that when the engine dies the running job fails with an error, the
engine is restarted, and nothing queued is lost.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable

from lofi_engine.service.dispatcher import EventCallback, EventDispatcher
from lofi_engine.service import library
from lofi_engine.service.live_play import LivePlay
from lofi_engine.service.playback import Playback
from lofi_engine.service.radio import Radio
from lofi_engine.engine.entry import engine_main
from lofi_engine.service.child_link import ChildLink
from lofi_engine.service.command_link import CommandLink
from lofi_engine.service.engine_link import EngineLink
from lofi_engine.service.queue import JobQueue, QueuedJob
from lofi_engine.shared.errors import (
    CANCELLED,
    ENGINE_UNAVAILABLE,
    INVALID_AUDIO,
    INVALID_PARAMS,
    MODEL_DOWNLOAD_FAILED,
    MODEL_INFERENCE_FAILED,
    MODEL_LOAD_FAILED,
    MODEL_NOT_FOUND,
    TRACK_NOT_FOUND,
    WRITE_FAILED,
    LofiError,
)
from lofi_engine.shared.log_dir import writable_log_dir
from lofi_engine.shared.protocol import DownloadJob, GenerateJob, RadioWindowJob
from lofi_engine.shared.request import GenerateRequest, file_digest
from lofi_engine.shared.settings import EngineConfig, Settings, default_state_dir
from lofi_engine.store.catalogue import ENCODEC, download_plan, download_question, is_available, model_version
from lofi_engine.store.consent import ConsentStore
from lofi_engine.store.tracks import TRACK_ID, TrackCache

METHOD_NOT_FOUND = "METHOD_NOT_FOUND"
LINK_TRIES = 6
"""Times a job starts again when the engine elsewhere cannot be reached (after 1, 2, 4, 8, 16, 32 s: a minute)."""
FINISHING_EVENTS = ("generation_complete", "generation_error", "download_complete", "download_error", "radio_segment", "radio_error")
RADIO_EVENTS = ("radio_chunk", "radio_segment", "radio_error", "generation_complete", "generation_error")
log = logging.getLogger("lofi.client")


class EngineClient:
    def __init__(self, settings: Settings, on_event: EventCallback, python: str | None = None, log_path: Path | None = None) -> None:
        """``python``: the interpreter that runs the engine (default: this one); ``log_path``: its log file (the
        player's is beside it), moved to a temp folder, with a ``service_warning``, when its folder cannot be written."""
        self._lock = threading.RLock()
        self._closed = False
        self._queue = JobQueue(lambda config, name: self._link.has(config, name))
        self._events = EventDispatcher(on_event)
        log_path = log_path or default_state_dir() / "engine.log"
        log_dir, problem = writable_log_dir(log_path.parent)
        log_path = log_dir / log_path.name
        self.log_warning = problem
        if problem is not None:
            log.warning("%s", problem)
            self._events.emit("service_warning", {"code": WRITE_FAILED, "message": problem, "log_dir": str(log_dir)})
        self._link = EngineLink(
            ChildLink("engine", engine_main, python, log_path, self._on_engine_event, self._on_engine_exit),
            CommandLink("engine", log_path, self._on_engine_event, self._on_engine_exit, lambda: self.cache),
        )
        self._playback = Playback(python, log_path.with_name("player.log"), self._events, self._lock, lambda: self.settings, lambda: self.cache)
        self._playback_handlers = self._playback.handlers()
        self._radio = Radio(
            lambda: self.settings, self._playback, self._events, self._submit_radio_window, self._withdraw_radio,
            self._generate, lambda track_id: self._cancel({"track_id": track_id}), self._later, self._audio_source,
            lambda config, backend: self._link.model_version(config, backend),
        )
        self._live = LivePlay(
            self._playback.start_open, self._playback.extend, self._playback.close_open,
            lambda track_id: self._playback_handlers["enqueue"]({"track_id": track_id}),
            lambda track_id, exc: self._events.emit("playback_end", {"track_id": track_id, "reason": "error", **exc.to_dict()}),
        )
        self._playback.listener = self._radio.on_event
        self._playback.taking_over = self._end_radio
        self._library_handlers = library.handlers(lambda: self.cache, self._busy_tracks, lambda: self._link.python)
        self._use(settings)
        self._radio.forget_stale()  # what a crashed session's radio left

    def _use(self, settings: Settings) -> None:
        self.settings = settings
        config = self.config = settings.engine
        self.model_version = model_version(config)
        """MusicGen's; ACE-Step's is read from its export's manifest at each request (it may be exported later)."""
        self.cache = TrackCache(config.cache_dir / "tracks", config.cache_max_bytes)
        self.consent = ConsentStore(config)
        self.cache.prepare()

    @property
    def log_path(self) -> Path:
        return self._link.log_path

    @property
    def engine_pid(self) -> int | None:
        with self._lock:
            return self._link.pid

    # ---- requests -------------------------------------------------------------------------------------------

    def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Answer one request at once; raises LofiError with the spec's code."""
        handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "generate": self._generate,
            "check_generate": self._check_generate,
            "queue": lambda p: self._queue_view(),
            "download": self._download,
            "tracks": lambda p: self.cache.tracks(),
            "track_played": self._track_played,
            "status": lambda p: self._status(),
            "engine_check": self._engine_check,
            "cancel": self._cancel,
            **self._playback_handlers,
            **self._library_handlers,
            **self._radio.handlers(),
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

    def reconfigure(self, settings: Settings, python: str | None = None) -> dict[str, Any]:
        """New settings. Engine settings are for the jobs queued from now on: jobs already queued (and the running
        one) finish with the settings they were queued with, and the engine restarts only when a job needs other
        engine settings. Player settings apply to the playing player at once; radio settings from the radio's next
        window or piece. Returns how many jobs keep their engine settings (none when those did not change)."""
        with self._lock:
            kept = len(self._queue.jobs()) if settings.engine != self.config else 0
            player_changed = settings.player != self.settings.player
            self._use(settings)
            if player_changed:
                self._playback.apply_settings()
            self._link.python = self._playback.python = python
            if self._queue.question is not None and not any(self._queue.missing(j) for j in self._queue.pending):
                self._queue.question = None
            self._advance()
            return {"kept_jobs": kept}

    def _generate(self, params: dict[str, Any]) -> dict[str, Any]:
        request = GenerateRequest.parse(params, self.config.backend)
        if self.config.engine_command or request.backend != "musicgen":
            version = self._link.model_version(self.config, request.backend)
        else:
            version = self.model_version
        source = self._continue_source(request.continue_from)
        tid = request.track_id(version, file_digest(source) if source is not None else None)
        plays = request.play and self._radio.session is None  # the radio keeps the player while it plays
        cached = self.cache.get(tid)
        if cached is not None:
            self._events.emit("generation_complete", {**cached, "cached": True})
            if plays:
                try:
                    self._playback_handlers["enqueue"]({"track_id": tid})
                except LofiError as exc:  # the track is there; the player is not
                    self._events.emit("playback_end", {"track_id": tid, "reason": "error", **exc.to_dict()})
            return {"track_id": tid, "status": "cached", "position": 0, "seed": request.seed, "path": cached["path"]}
        if plays:  # heard while composed (a piece continuing audio: that audio first)
            self._live.watch(tid, request.duration_sec, {"prompt": request.prompt, "duration_sec": request.duration_sec, "backend": request.backend},
                             continues=source is not None)
        found = self._queue.find(tid)
        if found is not None:
            position, job = found
            return {"track_id": tid, "status": "running" if job is self._queue.running else "queued", "position": position, "seed": request.seed}
        job = QueuedJob(GenerateJob(request, tid, version, str(source) if source is not None else None), self.config, request.priority)
        position = self._queue.add(job)
        if self._queue.missing(job):
            self._ask_for_download(job)
        self._advance()
        return {"track_id": tid, "status": "queued", "position": position, "seed": request.seed}

    def _continue_source(self, continue_from: str | None) -> Path | None:
        return self._audio_source(continue_from)[0] if continue_from is not None else None

    def _audio_source(self, continue_from: str) -> tuple[Path, str | None]:
        """The file a piece or the radio continues, and its prompt when it is a track: a cached track's WAV for a
        track id, else the path given (absolute, or the server's working directory's), which must be a regular file;
        INVALID_AUDIO naming it otherwise."""
        if TRACK_ID.fullmatch(continue_from):
            track = self.cache.get(continue_from)
            if track is None:
                raise LofiError(TRACK_NOT_FOUND, f"no cached track {continue_from} to continue")
            return Path(track["path"]), track.get("prompt")
        path = Path(continue_from).expanduser().absolute()
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except OSError as exc:
            raise LofiError(INVALID_AUDIO, f"{path}: {exc.strerror or exc}") from None
        if not regular:
            raise LofiError(INVALID_AUDIO, f"{path} is not a regular file")
        return path, None

    def _check_generate(self, params: dict[str, Any]) -> dict[str, Any]:
        """The parser's verdict on a generation's options before its prompt is known (a command asks for the prompt
        only when the options are good): nothing is queued."""
        GenerateRequest.parse({**params, "prompt": params.get("prompt") or "a prompt to come"}, self.config.backend)
        return {"ok": True}

    def _submit_radio_window(self, work: RadioWindowJob) -> None:
        """The radio's next window, queued like any job (other requests keep their turn between windows)."""
        job = QueuedJob(work, self.config)
        self._queue.add(job)
        if self._queue.missing(job):
            self._ask_for_download(job)
        self._advance()

    def _withdraw_radio(self, stream_id: str) -> None:
        self._queue.remove([j for j in self._queue.pending if isinstance(j.work, RadioWindowJob) and j.work.stream_id == stream_id])
        running = self._queue.running
        if running is not None and isinstance(running.work, RadioWindowJob) and running.work.stream_id == stream_id:
            self._link.cancel_running()

    def _end_radio(self) -> bool:
        """A track picked by hand, or a stop, ends the radio (for every client): whether it was on."""
        if self._radio.session is None:
            return False
        self._radio.stop()
        return True

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        """``fn()`` after ``delay`` seconds, under the lock (nothing once the client is closed)."""

        def run() -> None:
            with self._lock:
                if not self._closed:
                    fn()

        timer = threading.Timer(delay, run)
        timer.daemon = True
        timer.start()

    def _ask_for_download(self, job: QueuedJob) -> None:
        """A job needs a download (the model, or EnCodec's weights): start it if the user agreed before, else ask
        (for this job too, when the same question is already out)."""
        name = self._queue.missing(job)
        assert name is not None
        if self.consent.granted(name):
            self._queue.add_download(job.config, name)
            return
        if self._queue.question is not None and self._queue.question["variant"] != name:
            return  # one question at a time: this one is asked once that one is answered (_ask_next)
        self._queue.question = self._question(job.config, name)
        about = {"track_id": job.track_id} if job.track_id is not None else {}
        self._events.emit("consent_required", {**self._queue.question, **about})

    def _question(self, config: EngineConfig, name: str | None = None) -> dict[str, Any]:
        """What the user is asked before the download ``name`` (default: the variant), with the machine it goes to
        when the engine runs elsewhere."""
        question = download_question(config, name)
        host = self._link.host(config)
        return {**question, "host": host} if host is not None else question

    def _ask_next(self) -> None:
        """The next download a waiting job needs, once no question is out and no download is under way (a continued
        piece needs the model, then EnCodec's weights)."""
        if self._queue.question is not None or self._queue.downloads():
            return
        job = next((j for j in self._queue.pending if self._queue.missing(j)), None)
        if job is not None:
            self._ask_for_download(job)

    def _download(self, params: dict[str, Any]) -> dict[str, Any]:
        consent = params.get("consent")
        if not isinstance(consent, bool):
            raise LofiError(INVALID_PARAMS, "download needs consent: true (download now) or false (decline)")
        asked = self._queue.question["variant"] if self._queue.question is not None else None
        name = params.get("variant", asked or self.config.variant)
        if not isinstance(name, str):
            raise LofiError(INVALID_PARAMS, f"variant must be a variant's name or {ENCODEC!r}")
        plan = download_plan(self.config, name)
        self.consent.record(name, consent)
        if asked == name:
            self._queue.question = None
        if not consent:  # only the jobs that need this download fail
            declined = self._queue.waiting_for_download(name)
            self._queue.remove(declined)
            for job in declined:
                if name == ENCODEC:
                    message = (
                        "continuing audio needs EnCodec's weights, and their download was declined; "
                        "continue again to be asked again, or set encodec_dir to a folder with them"
                    )
                else:
                    message = (
                        f"the {name} model is not downloaded and its download was declined; "
                        "ask for it again with :LofiDownload (Neovim) or `lofi download` (terminal)"
                    )
                self._job_error(job, MODEL_NOT_FOUND, message)
            self._ask_next()
            return {"status": "declined", "variant": name}
        if self._link.has(self.config, plan.name):
            self._advance()
            return {"status": "available", "variant": name}
        self._queue.add_download(self.config, name)
        self._advance()
        return {"status": "downloading", "variant": name}

    def _cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        """Drop a queued job at once, or stop the running one (MusicGen between decoder steps, ACE-Step between or
        inside its steps): its requester gets `generation_error` CANCELLED. This goes past FR-009, which ruled
        stopping a started generation out as too complex."""
        track_id = params.get("track_id")
        job = next((j for j in self._queue.pending if j.track_id is not None and j.track_id == track_id), None)
        if job is not None:
            self._queue.remove([job])
            self._generation_error(job.track_id, CANCELLED, "cancelled before it started")
            return {"track_id": track_id, "status": "cancelled"}
        running = self._queue.running
        if running is not None and running.track_id is not None and running.track_id == track_id:
            self._link.cancel_running()
            return {"track_id": track_id, "status": "cancelling"}
        raise LofiError(INVALID_PARAMS, f"no queued generation {track_id!r}")

    def _track_played(self, params: dict[str, Any]) -> dict[str, Any]:
        meta = self.cache.touch(str(params.get("track_id")))
        if meta is None:
            raise LofiError(INVALID_PARAMS, f"no cached track {params.get('track_id')!r}")
        return meta

    def _busy_tracks(self) -> set[str]:
        """Tracks that may not be deleted now: queued, generating, or in the player's playlist (unless the player has
        stopped: a stopped playlist is only replaced by the next `play`, and what it held may go)."""
        ids = {j.track_id for j in self._queue.jobs() if j.track_id is not None}
        state = self._playback.state
        if state.get("state") == "stopped":
            return ids
        return ids | set(state.get("playlist") or []) | ({state["track_id"]} if state.get("track_id") else set())

    def _engine_check(self, params: dict[str, Any]) -> dict[str, Any]:
        """Whether the engine elsewhere answers (:checkhealth): its host, version, providers and models, asked now."""
        if not self.config.engine_command:
            return {"remote": False}
        return {"remote": True, "command": self.config.engine_command, "variant": self.config.variant, **self._link.check(self.config)}

    def _queue_view(self) -> dict[str, Any]:
        views = [job.view(position) for position, job in enumerate(self._queue.jobs())]
        running = views.pop(0) if self._queue.running is not None else None
        return {"running": running, "pending": views, "awaiting_consent": self._queue.question is not None}

    def _status(self) -> dict[str, Any]:
        running = self._queue.running
        version, available = (  # the model where the engine is
            self._link.remote_model(self.config, "musicgen") if self.config.engine_command else (self.model_version, is_available(self.config))
        )
        return {
            "engine": "running" if self._link.alive else "stopped",
            "engine_pid": self._link.pid,
            "engine_remote": self._link.remote(self.config),  # the other side's handshake, when the engine is reached by a command
            "model_version": version,  # None: the engine elsewhere has not answered yet
            "backend": self.config.backend,
            "variant": self.config.variant,
            "ace_step_model_dir": str(self.config.ace_step_dir),
            "ace_step_available": (self.config.ace_step_dir / "manifest.json").is_file(),
            "model_dir": str(self.config.model_dir) if self.config.model_dir else None,
            "model_available": available,
            "download_question": self._question(self.config),  # what :LofiDownload asks (no network)
            "awaiting_consent": self._queue.question is not None,
            "running": running.track_id if running is not None else None,
            "pending": len(self._queue.pending),
            "cache_dir": str(self.cache.root),
            "log_path": str(self.log_path),
            "log_warning": self.log_warning,
            "playback": self._playback.status(),
            "radio": self._radio.status(),
        }

    # ---- the engine process ---------------------------------------------------------------------------------

    def _advance(self) -> None:
        """Start the next job that can run when the engine is free (called with the lock held)."""
        if self._closed:
            return
        self._ask_next()
        job = self._queue.start_next()
        if job is None:
            return
        try:
            self._link.send(job.work, job.config.to_dict(), job.config.stall_timeout_sec)
        except LofiError as exc:
            if not self._retry_later(exc.code, exc.message):
                self._finish_with_error(exc.code, exc.message)
        except (OSError, ValueError) as exc:
            self._finish_with_error(MODEL_LOAD_FAILED, f"the engine process ({self._link.python or 'this Python'}) exited at once: {exc}; see {self.log_path}")

    def _on_engine_event(self, name: str, fields: dict[str, Any]) -> None:
        with self._lock:
            job = self._queue.running
            if name == "generation_progress" and job is not None:
                job.percent, job.eta_sec = fields["percent"], fields["eta_sec"]
            if name in FINISHING_EVENTS:
                self._queue.finish()
            if name == "generation_complete":  # the chunks of a piece the player reads as it is composed stay for now
                self.cache.evict(keep=fields["track_id"], spare_chunks=self._live.playing(fields["track_id"]))
            self._events.emit(name, fields)
            self._live.on_event(name, fields)
            if name in RADIO_EVENTS:
                self._radio.on_event(name, fields)
            if name == "download_error":  # the jobs that waited for it cannot run
                self._fail_waiting(fields["variant"], f"the download failed: {fields['message']}")
            self._advance()

    def _on_engine_exit(self, process: multiprocessing.process.BaseProcess) -> None:
        with self._lock:
            if self._closed or not self._link.crashed(process):
                return
            failure = self._link.failure(process)
            if failure is not None:  # the engine command never reached an engine
                if not self._retry_later(*failure):
                    self._finish_with_error(*failure)
            elif self._link.stalled(process):
                self._finish_with_error(
                    MODEL_INFERENCE_FAILED,
                    f"the engine stopped responding (nothing for {self.config.stall_timeout_sec:g} s); it has been restarted; details in {self.log_path}",
                )
            elif not (self._link.over_command(process) and self._retry_later(ENGINE_UNAVAILABLE, "the link to the engine dropped")):
                self._finish_with_error(
                    MODEL_INFERENCE_FAILED, f"the engine crashed (exit code {process.exitcode}); it has been restarted; details in {self.log_path}"
                )
            self._advance()

    def _retry_later(self, code: str, message: str) -> bool:
        """The engine elsewhere cannot be reached (the command fails, the link dropped): the running job goes first in
        the queue again and runs once a link is up, tried after 1, 2, 4 … 32 s; nothing queued is lost. False (the
        job fails) for a local engine, another fault, or once the tries are spent."""
        job = self._queue.running
        if job is None or code != ENGINE_UNAVAILABLE or not job.config.engine_command or job.attempts >= LINK_TRIES:
            return False
        job.attempts += 1
        self._queue.requeue(job)
        if job.track_id is not None:
            self._live.restarted(job.track_id)
        delay = 2.0 ** (job.attempts - 1)
        self._queue.resume_at = time.monotonic() + delay
        self._later(delay, self._advance)
        what = job.view(0)["kind"]
        self._events.emit("service_warning", {
            "code": ENGINE_UNAVAILABLE, "message": f"{message}; the {what} starts again in {delay:g} s (try {job.attempts} of {LINK_TRIES})"})
        return True

    def _finish_with_error(self, code: str, message: str) -> None:
        job = self._queue.finish()
        if job is None:
            return
        if isinstance(job.work, DownloadJob):
            self._events.emit("download_error", {"variant": job.work.variant, "code": MODEL_DOWNLOAD_FAILED, "message": message})
            self._fail_waiting(job.work.variant, f"the download failed: {message}")
        else:
            self._job_error(job, code, message)

    def _job_error(self, job: QueuedJob, code: str, message: str) -> None:
        """A generation or radio window the service ends (not the engine): its requester is told."""
        if isinstance(job.work, GenerateJob):
            self._generation_error(job.work.track_id, code, message)
            self._radio.on_event("generation_error", {"track_id": job.work.track_id, "code": code, "message": message})
        elif isinstance(job.work, RadioWindowJob):
            fields = {"stream_id": job.work.stream_id, "code": code, "message": message}
            self._events.emit("radio_error", fields)
            self._radio.on_event("radio_error", fields)

    def _fail_waiting(self, name: str, message: str) -> None:
        """The jobs waiting for the download ``name`` cannot run: it failed."""
        waiting = self._queue.waiting_for_download(name)
        self._queue.remove(waiting)
        for job in waiting:
            self._job_error(job, MODEL_DOWNLOAD_FAILED, message)

    def _generation_error(self, track_id: str, code: str, message: str) -> None:
        """A job the service ends (not the engine): its requester is told, and a piece playing as it is composed
        plays what was composed to its end."""
        fields = {"track_id": track_id, "code": code, "message": message}
        self._events.emit("generation_error", fields)
        self._live.on_event("generation_error", fields)

    # ---- shutdown -----------------------------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Stop the engine process (a running generation is abandoned) and the dispatcher."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # Both children at once (outside the lock: the reader threads may be waiting for it with a last event): the
        # player lets mpv play out what it holds while the engine gets its time to stop, so quitting waits for the
        # slower of the two, not their sum.
        player = threading.Thread(target=self._playback.close, name="lofi-player-close", daemon=True)
        player.start()
        self._link.stop(timeout)
        player.join(timeout + 1)
        self._radio.forget()
        self._events.close(timeout)
