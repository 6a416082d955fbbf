"""The engine process's work: one job at a time from the service, events streamed back over the pipe.

Every job arrives parsed and decided (the request checked, its track id and model version fixed, the download
agreed to); the worker loads models, composes, writes the track and reports. The model is loaded on the first
generation (FR-006) and kept (FR-007).
"""

from __future__ import annotations

import logging
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

from lofi_engine.ace_step.pipeline import AceStep
from lofi_engine.engine.backends import LoadCallback, attach_encoder, load_backend
from lofi_engine.engine.download import download
from lofi_engine.engine.progress import ProgressReporter
from lofi_engine.engine.wav import write_wav
from lofi_engine.shared.backend import Backend
from lofi_engine.musicgen.audio_prompt import read_audio_prompt
from lofi_engine.musicgen.model import Chunk, Step
from lofi_engine.musicgen.radio import ContinuousStream
from lofi_engine.musicgen.streaming import LOOKAHEAD
from lofi_engine.shared.errors import MODEL_INFERENCE_FAILED, LofiError
from lofi_engine.shared.events import event
from lofi_engine.shared.protocol import HEARTBEAT, HEARTBEAT_SEC, SHUTDOWN, DownloadJob, GenerateJob, RadioWindowJob
from lofi_engine.shared.settings import EngineConfig
from lofi_engine.shared.track import Finished, track_metadata
from lofi_engine.store.catalogue import download_plan, model_version
from lofi_engine.store.tracks import TrackCache

log = logging.getLogger("lofi.engine")


class Worker:
    def __init__(self, conn: Connection, config: EngineConfig, cancel: Any) -> None:
        """``cancel``: the service's multiprocessing Event asking to stop the running job (ACE-Step only)."""
        self.conn = conn
        self.config = config
        self.cancel = cancel
        self.cache = TrackCache(config.cache_dir / "tracks", config.cache_max_bytes)
        self.models: dict[str, Backend] = {}
        self.radio: tuple[str, ContinuousStream] | None = None  # the radio's endless stream (id, state) between windows
        self._send_lock = threading.Lock()  # events from the job and the heartbeat thread share the pipe

    def emit(self, name: str, fields: dict[str, Any]) -> None:
        self._send(event(name, fields))

    def _send(self, message: Any) -> None:
        with self._send_lock:
            self.conn.send(message)

    def _heartbeat(self, stop: threading.Event) -> None:
        """A sign of life every second, whatever the job is doing (ONNX Runtime releases the GIL while it runs)."""
        while not stop.wait(HEARTBEAT_SEC):
            try:
                self._send(HEARTBEAT)
            except (OSError, ValueError):
                return

    def serve(self) -> None:
        stop = threading.Event()
        threading.Thread(target=self._heartbeat, args=(stop,), name="lofi-heartbeat", daemon=True).start()
        try:
            self._serve()
        finally:
            stop.set()

    def _serve(self) -> None:
        while True:
            try:
                job = self.conn.recv()
            except EOFError:
                return  # the service is gone
            if job == SHUTDOWN:
                return
            if isinstance(job, GenerateJob):
                self.generate(job)
            elif isinstance(job, RadioWindowJob):
                self.radio_window(job)
            elif isinstance(job, DownloadJob):
                self.download(job)

    def generate(self, job: GenerateJob) -> None:
        request, track_id = job.request, job.track_id
        self.emit("generation_start", {"track_id": track_id, **request.describe()})
        try:
            model = self.ensure_model(track_id, request.backend, job.model_version)
            if isinstance(model, AceStep):
                generation = self.run_cancellable(model, job, ProgressReporter(track_id, model.progress_model(request), self.emit))
            else:  # MusicGen stops between decoder steps (past FR-009: see README) and plays while it composes
                prompt = None
                if job.continue_from is not None:
                    prompt = read_audio_prompt(job.continue_from, model.sample_rate)
                    attach_encoder(model, self.config)
                reporter = ProgressReporter(track_id, model.progress_model(request, prompt), self.emit)
                for item in model.stream(request, self.cancel.is_set, continue_from=prompt):
                    if isinstance(item, Step):
                        reporter(item.done, item.total)
                    elif isinstance(item, Chunk):
                        self.chunk(track_id, item.audio, item.first_sample, model.sample_rate)
                    else:
                        generation = item
            path = write_wav(self.cache.wav_path(track_id), generation.audio, generation.sample_rate)
            meta = track_metadata(generation, track_id, path, request.music)
            if request.continue_from is not None:
                meta["continue_from"] = request.continue_from
            self.cache.put(meta)
            self.emit("generation_complete", meta)
        except LofiError as exc:
            self.fail(track_id, exc.code, exc.message)
        except MemoryError:
            self.fail(track_id, MODEL_INFERENCE_FAILED, "out of memory while generating")
        except Exception as exc:  # a bug must not kill the engine and the queue behind it
            log.exception("generation %s failed", track_id)
            self.fail(track_id, MODEL_INFERENCE_FAILED, f"unexpected engine error: {exc!r}")

    def radio_window(self, job: RadioWindowJob) -> None:
        """The next window of the radio's stream: its final audio written where the service asked, then
        `radio_segment`; the stream's codes stay here for the window after it."""
        started = time.perf_counter()
        try:
            restarted = False
            if self.radio is None or self.radio[0] != job.stream_id:
                model = self.ensure_model(job.stream_id, "musicgen", self._musicgen_version())
                given = None
                if job.continue_from is not None:  # the stream goes on from the user's audio (its last context_sec)
                    attach_encoder(model, self.config)  # type: ignore[arg-type]
                    given = model.prompt_codes(read_audio_prompt(job.continue_from, model.sample_rate, context_sec=job.context_sec))  # type: ignore[union-attr]
                self.radio = (job.stream_id, ContinuousStream(model, job.request, job.window_sec, job.context_sec, given))  # type: ignore[arg-type]
                restarted = job.window > 0
                if restarted:
                    log.warning("radio %s: window %d asked of an engine without the stream's codes; starting it over", job.stream_id, job.window)
            stream = self.radio[1]
            if job.window < stream.windows:  # a steer: the windows after it were not heard
                stream.rewind(job.window)
            if job.request.prompt != stream.prompt:
                stream.steer(job.request.prompt)
            rate = stream.model.settings.sample_rate
            segment = stream.next_window(should_stop=self.cancel.is_set, **self._window_chunks(job, stream, rate))
            path = write_wav(Path(job.segment_path), segment.audio, rate)
            hop = stream.model.settings.hop_length
            self.emit("radio_segment", {
                "stream_id": job.stream_id, "path": str(path), "start_sec": segment.first_frame * hop / rate,
                "duration_sec": len(segment.audio) / rate, "prompt": segment.prompt,
                "generation_time_sec": round(time.perf_counter() - started, 3), **({"restarted": True} if restarted else {}),
            })
        except LofiError as exc:  # a cancelled window leaves the stream as it was (a steer goes on from it)
            self.emit("radio_error", {"stream_id": job.stream_id, "code": exc.code, "message": exc.message})
        except MemoryError:
            self.emit("radio_error", {"stream_id": job.stream_id, "code": MODEL_INFERENCE_FAILED, "message": "out of memory"})
        except Exception as exc:  # a bug must not kill the engine
            log.exception("radio window failed")
            self.emit("radio_error", {"stream_id": job.stream_id, "code": MODEL_INFERENCE_FAILED, "message": f"unexpected engine error: {exc!r}"})

    def _window_chunks(self, job: RadioWindowJob, stream: ContinuousStream, rate: int) -> dict[str, Any]:
        """``on_step`` and ``on_chunk`` for a window heard while composed: each chunk is written beside the segment
        (named by its first sample) and goes out as `radio_chunk` with the window's ETA."""
        if not (job.chunks and stream.streams_next_window()):
            return {}
        eta = stream.progress_model(chunks=True)
        window_sec = (stream.new_frames() - LOOKAHEAD) * stream.model.settings.hop_length / rate  # the audio it will give
        steps_done, last_step = 0, time.perf_counter()

        def on_step(done: int, total: int) -> None:
            nonlocal steps_done, last_step
            now = time.perf_counter()
            eta.record(done - 1, now - last_step)
            steps_done, last_step = done, now

        def on_chunk(audio: Any, first_sample: int) -> None:
            segment = Path(job.segment_path)
            path = write_wav(segment.with_name(f"{segment.stem}.{first_sample:012d}.wav"), audio, rate)
            self.emit("radio_chunk", {
                "stream_id": job.stream_id, "segment_path": job.segment_path, "path": str(path), "start_sec": first_sample / rate,
                "duration_sec": len(audio) / rate, "eta_sec": round(eta.eta(steps_done), 1), "window_sec": round(window_sec, 3),
            })

        return {"on_step": on_step, "on_chunk": on_chunk}

    def _musicgen_version(self) -> str:
        loaded = self.models.get("musicgen")
        return loaded.model_version if loaded is not None else model_version(self.config)

    def run_cancellable(self, model: AceStep, job: GenerateJob, reporter: ProgressReporter) -> Finished:
        """An ACE-Step job, stopped when the service sets the cancel event (between steps, or inside one)."""
        finished = threading.Event()
        watcher = threading.Thread(target=_watch_cancel, args=(self.cancel, finished, model.cancel), daemon=True)
        watcher.start()
        try:
            return model.run(job.request, on_step=reporter, should_stop=self.cancel.is_set)
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

    def download(self, job: DownloadJob) -> None:
        """What the user agreed to download (the variant, or EnCodec's weights), reporting `download_progress`."""
        try:
            plan = download_plan(self.config, job.variant)
            path = download(plan, lambda progress: self.emit("download_progress", {"variant": job.variant, "what": plan.title, **progress}))
            self.emit("download_complete", {"variant": job.variant, "what": plan.title, "path": str(path)})
        except LofiError as exc:
            self.emit("download_error", {"variant": job.variant, **exc.to_dict()})

    def ensure_model(self, track_id: str, backend: str, model_version: str) -> Backend:
        """The backend's model, loaded on first use and kept (FR-007); the other backend's is let go to free memory.
        A job naming another version (the ACE-Step export was redone meanwhile) loads the files now on disk."""
        loaded = self.models.get(backend)
        if loaded is not None and loaded.model_version == model_version:
            return loaded
        if self.models:
            log.info("unloading %s to load %s", ", ".join(self.models), backend)
            self.models.clear()
        self.models[backend] = load_backend(
            self.config, backend, model_version, on_load=self._load_progress(track_id), on_verify=self._load_progress(track_id, "verify")
        )
        return self.models[backend]

    def _load_progress(self, track_id: str, stage: str = "load") -> LoadCallback:
        """`model_load_progress` events: ``stage`` "verify" while files are checked, "load" while sessions open."""
        last = -1

        def loaded(name: str, done: int, total: int) -> None:
            nonlocal last
            percent = 100 * done // max(total, 1)
            if stage == "verify" and percent == last:
                return
            last = percent
            fields = {"track_id": track_id, "file": name, "bytes_loaded": done, "bytes_total": total, "percent": percent}
            self.emit("model_load_progress", fields if stage == "load" else {**fields, "stage": stage})

        return loaded


def _watch_cancel(cancel: Any, finished: threading.Event, stop: Callable[[], None]) -> None:
    """Until the job is finished, pass the service's cancel request on to the model."""
    while not finished.is_set():
        if cancel.wait(0.05):
            stop()
            return
