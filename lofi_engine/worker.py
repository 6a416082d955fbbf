"""The engine process's work: one job at a time from the client, events streamed back over the pipe.

Jobs are ``{"method": "generate" | "download", "params": …}``; events are ``{"method": name, "params": …}`` shaped
like the spec's JSON-RPC notifications. The model is loaded on the first generation (FR-006) and kept (FR-007).
"""

from __future__ import annotations

import logging
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .cache import TrackCache
from .config import EngineConfig
from .download import download_variant, forget_file, remote_sizes
from .errors import MODEL_INFERENCE_FAILED, MODEL_LOAD_FAILED, LofiError
from .models import ConsentStore, is_available, locate_model
from .musicgen import MusicGen
from .progress import ProgressReporter
from .track import track_metadata
from .wav import write_wav

log = logging.getLogger("lofi.engine")


class ConsentRequired(Exception):
    """The model must be downloaded and the user has not agreed yet."""


class Worker:
    def __init__(self, conn: Connection, config: EngineConfig, model_version: str) -> None:
        self.conn = conn
        self.config = config
        self.model_version = model_version
        self.cache = TrackCache(config.cache_dir / "tracks", config.cache_max_bytes)
        self.consent = ConsentStore(config)
        self.model: MusicGen | None = None

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
        track_id = job["track_id"]
        self.emit("generation_start", {"track_id": track_id, "prompt": job["prompt"], "duration_sec": job["duration_sec"], "seed": job["seed"]})
        try:
            model = self.ensure_model(track_id)
            positions = [p for w in model.plan(job["duration_sec"]) for p in w.cache_positions]
            generation = model.generate(
                job["prompt"],
                duration_sec=job["duration_sec"],
                seed=job["seed"],
                on_step=ProgressReporter(track_id, positions, self.emit),
                on_chunk=lambda audio, start: self.chunk(track_id, audio, start, model.settings.sample_rate),
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

    def ensure_model(self, track_id: str) -> MusicGen:
        if self.model is not None:
            return self.model
        if not is_available(self.config):
            if not self.consent.granted(self.config.variant):
                sizes = remote_sizes(self.config.variant)
                raise ConsentRequired({"variant": self.config.variant, "size_bytes": sum(sizes.values()), "files": sorted(sizes)})
            self.fetch_model(track_id)
        model_dir = locate_model(self.config)
        started = time.perf_counter()

        def loaded(name: str, done: int, total: int) -> None:
            self.emit("model_load_progress", {"track_id": track_id, "file": name, "bytes_loaded": done, "bytes_total": total, "percent": 100 * done // total})

        try:
            self.model = MusicGen.load(
                model_dir, device=self.config.device, threads=self.config.threads, decoder=self.config.decoder,
                model_version=self.model_version, on_progress=loaded, optimized_cache=self.config.optimized_dir,
            )
        except LofiError as exc:
            if exc.code == MODEL_LOAD_FAILED and self.config.model_dir is None:
                self._forget_broken_download(model_dir, exc)
            raise
        log.info("model loaded from %s in %.1f s", model_dir, time.perf_counter() - started)
        return self.model

    def _forget_broken_download(self, model_dir: Path, exc: LofiError) -> None:
        """A downloaded file that does not load is deleted, so the next request downloads it again."""
        for path in model_dir.iterdir():
            if path.name in exc.message:
                forget_file(path)
                exc.message += "; the file was deleted and will be downloaded again on the next request"
