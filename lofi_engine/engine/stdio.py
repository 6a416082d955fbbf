"""`lofi engine --stdio`: the engine speaking the engine protocol (:mod:`lofi_engine.shared.wire`) over its stdin
and stdout, for a service that starts it through a command (``ssh -T box lofi engine --stdio``).

This side holds the model (downloaded here, into this machine's cache, once the user agreed on theirs) and runs
the jobs with the same :class:`~lofi_engine.engine.worker.Worker` as the local engine process. The audio a job
continues comes with the job; the WAVs a job writes (the track, its chunks, the radio's segments) go back with
their events, as they are made, and are deleted here: the track store is the service's. Paths in the service's
settings are its own machine's: this side uses its own (its command line's, or its defaults). Its log is its
stderr, which the service keeps in its engine log.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import re
import shutil
import socket
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import soundfile

from lofi_engine.shared.errors import ENGINE_VERSION_MISMATCH, INVALID_PARAMS, WRITE_FAILED, LofiError
from lofi_engine.shared.protocol import HEARTBEAT, SHUTDOWN, Job, RadioWindowJob
from lofi_engine.shared.settings import BACKENDS, EngineConfig
from lofi_engine.shared.version import VERSION
from lofi_engine.store.tracks import TrackCache
from lofi_engine.shared.wire import FILE_FIELDS, LOCAL_PATHS, PROTOCOL, Wire, WireError, job_from_message

log = logging.getLogger("lofi.engine")
STREAM_ID = re.compile(r"[0-9a-f]{1,64}")



def serve_stdio(own: dict[str, Any]) -> int:
    """Serve one service over stdin/stdout until it says shutdown or goes; ``own``: this machine's paths (any of
    :data:`LOCAL_PATHS`). Returns the exit status."""
    writer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stdout is the protocol's: whatever prints goes to the log
    wire = Wire(os.fdopen(os.dup(0), "rb", buffering=0), writer)  # unbuffered: a reader blocked at exit holds no lock
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s engine@{socket.gethostname()}[%(process)d] %(levelname)s %(message)s")
    try:
        got = wire.receive()
    except WireError as exc:
        log.error("not a service of the engine protocol on stdin: %s", exc)
        return 2
    if got is None:
        return 0
    hello, _ = got
    if hello.get("type") != "hello" or hello.get("protocol") != PROTOCOL:
        wire.send({"type": "error", "code": ENGINE_VERSION_MISMATCH, "message": mismatch(hello.get("protocol"), hello.get("version"))})
        return 1
    settings = {k: v for k, v in dict(hello.get("settings") or {}).items() if k not in (*LOCAL_PATHS, "engine_command")}
    try:
        config = EngineConfig(**settings, **{k: v for k, v in own.items() if v is not None})
    except (LofiError, TypeError) as exc:
        wire.send({"type": "error", "code": INVALID_PARAMS, "message": f"settings this engine cannot take: {exc}"})
        return 1
    wire.send({"type": "hello", **engine_facts(config)})
    log.info("serving a service over stdio (protocol %d, lofi.nvim %s); cache %s", PROTOCOL, VERSION, config.cache_dir)
    from lofi_engine.engine.worker import Worker

    cancel = threading.Event()
    link = _LinkConnection(wire, cancel, config)
    try:
        Worker(link, config, cancel).serve()  # type: ignore[arg-type]
    finally:
        shutil.rmtree(link.work, ignore_errors=True)
    return 0


def mismatch(theirs: object, their_version: object) -> str:
    return (f"the engine speaks protocol {PROTOCOL} (lofi.nvim {VERSION}), the service protocol {theirs} (lofi.nvim {their_version}): "
            "install the same version on both machines")


def engine_facts(config: EngineConfig) -> dict[str, Any]:
    """What the service learns at the handshake: who answers, and what it has."""
    import onnxruntime as ort

    from lofi_engine.store.catalogue import ENCODEC, have, model_version, variants

    versions, errors = {}, {}
    for backend in BACKENDS:
        try:
            versions[backend] = model_version(config, backend)
        except LofiError as exc:  # no ACE-Step export here, say
            errors[backend] = exc.message
    return {
        "protocol": PROTOCOL, "version": VERSION, "host": socket.gethostname(), "providers": ort.get_available_providers(),
        "device": config.device, "cache_dir": str(config.cache_dir), "model_dir": str(config.model_dir) if config.model_dir else None,
        "available": {name: have(config, name) for name in (*variants(), ENCODEC)},
        "model_versions": versions, "model_errors": errors,
    }


class _LinkConnection:
    """The Worker's pipe, over the wire: jobs in (their audio written here first), events out (with their WAVs)."""

    def __init__(self, wire: Wire, cancel: threading.Event, config: EngineConfig) -> None:
        self.wire, self.cancel = wire, cancel
        self.work = config.cache_dir / "link" / str(os.getpid())  # this link's own (another service may share the cache)
        self.tracks = TrackCache(config.cache_dir / "tracks", config.cache_max_bytes)
        self.sources: dict[str, str] = {}  # digest of audio the service sent → where it is here
        self.chunked: dict[str, int] = {}  # track id → frames of it sent as chunks
        self.jobs: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._read, name="lofi-link-reader", daemon=True).start()

    def recv(self) -> Any:
        return self.jobs.get()

    def send(self, message: Any) -> None:
        if message == HEARTBEAT:
            self.wire.send({"type": "heartbeat"})
            return
        name, fields = message
        key = FILE_FIELDS.get(name)
        if key is None or not fields.get(key):
            self.wire.send({"type": "event", "name": name, "fields": fields})
            return
        path = Path(fields[key])
        try:
            blob = path.read_bytes()
            frames = soundfile.info(str(path)).frames
        except (OSError, RuntimeError) as exc:  # written a moment ago: unreadable means this machine's disk is failing
            log.error("cannot send %s: %s", path, exc)
            failed = {"code": WRITE_FAILED, "message": f"{path} could not be read back on {socket.gethostname()}: {exc}"}
            if name == "generation_complete":
                self.wire.send({"type": "event", "name": "generation_error", "fields": {"track_id": fields["track_id"], **failed}})
            elif name == "radio_segment":
                self.wire.send({"type": "event", "name": "radio_error", "fields": {"stream_id": fields["stream_id"], **failed}})
            return
        path.unlink(missing_ok=True)  # the service keeps it: sent as it goes
        message = {"type": "event", "name": name, "fields": fields}
        if name == "generation_chunk":
            self.chunked[fields["track_id"]] = self.chunked.get(fields["track_id"], 0) + frames
        elif name == "generation_complete":
            self.tracks.remove(fields["track_id"])
            if self.chunked.pop(fields["track_id"], None) == frames:  # its chunks, joined, are the track: not sent again
                self.wire.send({**message, "from_chunks": frames})
                return
        self.wire.send(message, (blob,))

    def _read(self) -> None:
        while True:
            try:
                got = self.wire.receive()
            except WireError as exc:
                log.error("the service's stream broke the protocol: %s", exc)
                got = None
            if got is None:  # the service (or the link) is gone: stop what runs, and end
                self.cancel.set()
                self.jobs.put(SHUTDOWN)
                return
            message, blobs = got
            kind = message["type"]
            if kind == "cancel":
                self.cancel.set()
            elif kind == "shutdown":
                self.jobs.put(SHUTDOWN)
            elif kind == "job":
                try:
                    job = self._job(message, blobs)
                except LofiError as exc:
                    self.wire.send({"type": "error", "code": exc.code, "message": exc.message})
                    continue
                self.cancel.clear()  # a cancel that came too late for the previous job is not this one's
                self.jobs.put(job)

    def _job(self, message: dict[str, Any], blobs: list[bytes]) -> Job:
        """The job, its paths made this machine's: the audio it continues (sent once a link), where a window goes."""
        source = message.get("continue_from")
        if source is not None:
            digest = message.get("source_digest")
            if blobs:
                digest = hashlib.sha256(blobs[0]).hexdigest()[:16]
                path = self.work / "sources" / f"{digest}{Path(source).suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(blobs[0])
                self.sources[digest] = str(path)
            if digest not in self.sources:
                raise LofiError(INVALID_PARAMS, f"the audio to continue ({source}) did not come with the job")
            message = {**message, "continue_from": self.sources[digest]}
        job = job_from_message({k: v for k, v in message.items() if k != "source_digest"})
        if isinstance(job, RadioWindowJob):
            if not STREAM_ID.fullmatch(job.stream_id):
                raise LofiError(INVALID_PARAMS, f"not a radio stream id: {job.stream_id!r}")
            segment = self.work / "radio" / job.stream_id / Path(job.segment_path).name
            segment.parent.mkdir(parents=True, exist_ok=True)
            job = replace(job, segment_path=str(segment))
        return job
