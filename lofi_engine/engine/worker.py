"""The engine process's work: one job at a time from the client, events streamed back over the pipe.

Jobs are ``{"method": "generate" | "download", "params": …}``; events are ``{"method": name, "params": …}`` shaped
like the spec's JSON-RPC notifications. The model is loaded on the first generation (FR-006) and kept (FR-007).
"""

from __future__ import annotations

import logging
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

from lofi_engine.ace_step.pipeline import AceStep
from lofi_engine.shared.backend import Backend
from lofi_engine.store.tracks import TrackCache
from lofi_engine.shared.settings import EngineConfig
from lofi_engine.engine.download import download_variant, forget_file, remote_sizes
from lofi_engine.shared.errors import MODEL_INFERENCE_FAILED, MODEL_LOAD_FAILED, LofiError
from lofi_engine.store.catalogue import ConsentStore, is_available, locate_model
from lofi_engine.musicgen.model import MusicGen
from lofi_engine.engine.progress import ProgressReporter
from lofi_engine.shared.track import Finished, track_metadata
from lofi_engine.engine.wav import write_wav

log = logging.getLogger("lofi.engine")


class ConsentRequired(Exception):
    """The model must be downloaded and the user has not agreed yet."""


class Worker:
    def __init__(self, conn: Connection, config: EngineConfig, cancel: Any) -> None:
        """``cancel``: the client's multiprocessing Event asking to stop the running job (ACE-Step only)."""
        self.conn = conn
        self.config = config
        self.cancel = cancel
        self.cache = TrackCache(config.cache_dir / "tracks", config.cache_max_bytes)
        self.consent = ConsentStore(config)
        self.models: dict[str, Backend] = {}

    def emit(self, method: str, params: dict[str, Any]) -> None:
        self.conn.send({"method": method, "params": params})

    def serve(self) -> None:
        while True:
            try:
                job = self.conn.recv()
            except EOFError:
                return  # the client is gone
            if job["method"] == "shutdown":
                return
            if job["method"] == "generate":
                self.generate(job["params"])
            elif job["method"] == "download":
                self.download()

    def generate(self, job: dict[str, Any]) -> None:
        track_id, backend = job["track_id"], job["backend"]
        self.emit(
            "generation_start",
            {"track_id": track_id, "prompt": job["prompt"], "duration_sec": job["duration_sec"], "seed": job["seed"], "backend": backend},
        )
        try:
            model = self.ensure_model(track_id, backend, job["model_version"])
            reporter = ProgressReporter(track_id, model.progress_model(job["duration_sec"]), self.emit)
            if isinstance(model, AceStep):
                generation = self.run_cancellable(model, job, reporter)
            else:  # MusicGen cannot be stopped (FR-009) but plays while it composes
                generation = model.generate(
                    job["prompt"],
                    duration_sec=job["duration_sec"],
                    seed=job["seed"],
                    on_step=reporter,
                    on_chunk=lambda audio, start: self.chunk(track_id, audio, start, model.sample_rate),
                )
            path = write_wav(self.cache.wav_path(track_id), generation.audio, generation.sample_rate)
            meta = track_metadata(generation, path)
            self.cache.put(meta)
            self.emit("generation_complete", meta)
        except ConsentRequired as needed:
            self.cache.remove_chunks(track_id)
            self.emit("consent_required", {"track_id": track_id, **needed.args[0]})
        except LofiError as exc:
            self.fail(track_id, exc.code, exc.message)
        except MemoryError:
            self.fail(track_id, MODEL_INFERENCE_FAILED, "out of memory while generating")
        except Exception as exc:  # a bug must not kill the engine and the queue behind it
            log.exception("generation %s failed", track_id)
            self.fail(track_id, MODEL_INFERENCE_FAILED, f"unexpected engine error: {exc!r}")

    def run_cancellable(self, model: AceStep, job: dict[str, Any], reporter: ProgressReporter) -> Finished:
        """An ACE-Step job, stopped when the client sets the cancel event (between steps, or inside one)."""
        finished = threading.Event()
        watcher = threading.Thread(target=_watch_cancel, args=(self.cancel, finished, model.cancel), daemon=True)
        watcher.start()
        try:
            return model.generate(
                job["prompt"], duration_sec=job["duration_sec"], seed=job["seed"], on_step=reporter, should_stop=self.cancel.is_set
            )
        finally:
            finished.set()
            watcher.join()

    def fail(self, track_id: str, code: str, message: str) -> None:
        self.cache.remove_chunks(track_id)
        self.emit("generation_error", {"track_id": track_id, "code": code, "message": message})

    def chunk(self, track_id: str, audio: Any, start: int, sample_rate: int) -> None:
        """Playable audio before the track is done (`generation_chunk`): one WAV per 2 s, in order."""
        path = write_wav(self.cache.chunk_path(track_id, start), audio, sample_rate)
        self.emit(
            "generation_chunk",
            {"track_id": track_id, "path": str(path), "start_sec": start / sample_rate, "duration_sec": len(audio) / sample_rate},
        )

    def download(self) -> None:
        try:
            if not is_available(self.config):
                self.fetch_model()
            self.emit("download_complete", {"variant": self.config.variant, "path": str(locate_model(self.config))})
        except LofiError as exc:
            self.emit("download_error", {"variant": self.config.variant, **exc.to_dict()})

    def fetch_model(self, track_id: str | None = None) -> None:
        """Download the configured variant, reporting `download_progress` (for the job that needs it, if any)."""
        about = {"variant": self.config.variant} | ({"track_id": track_id} if track_id else {})
        download_variant(self.config, lambda progress: self.emit("download_progress", {**about, **progress}))

    def ensure_model(self, track_id: str, backend: str, model_version: str) -> Backend:
        """The backend's model, loaded on first use and kept (FR-007); the other backend's is let go to free memory.
        A job naming another version (the ACE-Step export was redone meanwhile) loads the files now on disk."""
        loaded = self.models.get(backend)
        if loaded is not None and loaded.model_version == model_version:
            return loaded
        if self.models:
            log.info("unloading %s to load %s", ", ".join(self.models), backend)
            self.models.clear()
        if backend == "ace-step":
            self.models[backend] = self.load_ace_step(track_id, model_version)
        else:
            self.models[backend] = self.load_musicgen(track_id, model_version)
        return self.models[backend]

    def _load_progress(self, track_id: str, stage: str = "load") -> Callable[[str, int, int], None]:
        """`model_load_progress` events: ``stage`` "verify" while files are checked, "load" while sessions open."""
        last = -1

        def loaded(name: str, done: int, total: int) -> None:
            nonlocal last
            percent = 100 * done // max(total, 1)
            if stage == "verify" and percent == last:
                return
            last = percent
            event = {"track_id": track_id, "file": name, "bytes_loaded": done, "bytes_total": total, "percent": percent}
            self.emit("model_load_progress", event if stage == "load" else {**event, "stage": stage})

        return loaded

    def load_ace_step(self, track_id: str, model_version: str) -> AceStep:
        started = time.perf_counter()
        model = AceStep.load(
            self.config.ace_step_dir, variant=self.config.ace_step_variant, device=self.config.device, threads=self.config.threads,
            model_version=model_version, on_progress=self._load_progress(track_id),
            on_verify=self._load_progress(track_id, "verify"),
        )
        log.info("ACE-Step loaded from %s in %.1f s", self.config.ace_step_dir, time.perf_counter() - started)
        return model

    def load_musicgen(self, track_id: str, model_version: str) -> MusicGen:
        if not is_available(self.config):
            if not self.consent.granted(self.config.variant):
                sizes = remote_sizes(self.config.variant)
                raise ConsentRequired({"variant": self.config.variant, "size_bytes": sum(sizes.values()), "files": sorted(sizes)})
            self.fetch_model(track_id)
        model_dir = locate_model(self.config)
        started = time.perf_counter()
        try:
            model = MusicGen.load(
                model_dir, device=self.config.device, threads=self.config.threads, decoder=self.config.decoder,
                model_version=model_version, on_progress=self._load_progress(track_id), optimized_cache=self.config.optimized_dir,
            )
        except LofiError as exc:
            if exc.code == MODEL_LOAD_FAILED and self.config.model_dir is None:
                self._forget_broken_download(model_dir, exc)
            raise
        log.info("MusicGen loaded from %s in %.1f s", model_dir, time.perf_counter() - started)
        return model

    def _forget_broken_download(self, model_dir: Path, exc: LofiError) -> None:
        """A downloaded file that does not load is deleted, so the next request downloads it again."""
        for path in model_dir.iterdir():
            if path.name in exc.message:
                forget_file(path)
                exc.message += "; the file was deleted and will be downloaded again on the next request"


def _watch_cancel(cancel: Any, finished: threading.Event, stop: Callable[[], None]) -> None:
    """Until the job is finished, pass the client's cancel request on to the model."""
    while not finished.is_set():
        if cancel.wait(0.05):
            stop()
            return
