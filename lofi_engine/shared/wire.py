"""The engine protocol over a byte stream (`lofi engine --stdio`, reached through a command such as ssh).

A frame is one kind byte, a 4-byte big-endian length and that many bytes: ``J`` a JSON object (UTF-8), ``B`` raw
bytes (a WAV file: audio travels as bytes, never pickled). A message is a ``J`` frame followed by the ``B`` frames it
announces in its ``blobs`` count. The first message each way is a ``hello`` naming :data:`PROTOCOL`: a mismatch is
ENGINE_VERSION_MISMATCH, naming both versions.

Messages from the service: ``hello`` {protocol, version, settings}, ``job`` {job: …} (:func:`job_to_message`),
``cancel``, ``shutdown``. From the engine: ``hello`` {protocol, version, host, providers, available, cache_dir},
``event`` {name, fields} (with the WAV it names as a blob), ``heartbeat``, ``error`` {code, message}.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from typing import Any, BinaryIO

from lofi_engine.shared.errors import INVALID_PARAMS, LofiError
from lofi_engine.shared.protocol import DownloadJob, GenerateJob, Job, RadioWindowJob
from lofi_engine.shared.request import GenerateRequest

PROTOCOL = 1
"""Bumped whenever a message changes meaning: both ends must speak the same one."""
JSON, BYTES = b"J", b"B"
MAX_FRAME = 1 << 31
"""No frame is longer (a 10-minute WAV at 48 kHz stereo is ≈ 115 MB)."""
MAX_MESSAGE = 1 << 24
"""No JSON message is longer (they hold settings and events, never audio)."""
LOCAL_PATHS = ("model_dir", "encodec_dir", "ace_step_model_dir", "cache_dir")
"""Settings that name places on one machine: not sent over the link (the engine's side uses its own)."""
FILE_FIELDS = {"generation_complete": "path", "generation_chunk": "path", "radio_segment": "path", "radio_chunk": "path"}
"""The events that name a WAV the engine wrote: the file travels with the event, and is written where the service's
side puts it."""


class WireError(Exception):
    """The stream broke the protocol (or ended in the middle of a frame)."""


class Wire:
    """Messages over a pair of byte streams; sending is thread-safe (the heartbeat and the jobs share the stream)."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self.reader, self.writer = reader, writer
        self._lock = threading.Lock()
        self.bytes_sent = 0
        self.bytes_received = 0

    def send(self, message: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> None:
        body = json.dumps({**message, "blobs": len(blobs)}, ensure_ascii=False).encode("utf-8")
        frames = [_frame(JSON, body), *(_frame(BYTES, blob) for blob in blobs)]
        with self._lock:
            for frame in frames:
                self.writer.write(frame)
            self.writer.flush()
            self.bytes_sent += sum(len(f) for f in frames)

    def receive(self) -> tuple[dict[str, Any], list[bytes]] | None:
        """The next message and its blobs; None at the end of the stream (between messages)."""
        first = self._frame(at_start=True)
        if first is None:
            return None
        kind, body = first
        if kind != JSON:
            raise WireError("a message must start with a JSON frame")
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise WireError(f"a JSON frame that is not JSON: {exc}") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise WireError("a message is a JSON object with a type")
        blobs = []
        for _ in range(int(message.pop("blobs", 0))):
            frame = self._frame(at_start=False)
            if frame is None or frame[0] != BYTES:
                raise WireError("a message's blob is missing")
            blobs.append(frame[1])
        return message, blobs

    def _frame(self, at_start: bool) -> tuple[bytes, bytes] | None:
        header = _read_exactly(self.reader, 5)
        if not header:
            if at_start:
                return None
            raise WireError("the stream ended inside a message")
        if len(header) < 5:
            raise WireError("the stream ended inside a frame's header")
        kind, length = header[:1], int.from_bytes(header[1:], "big")
        if kind not in (JSON, BYTES) or length > (MAX_MESSAGE if kind == JSON else MAX_FRAME):
            raise WireError(f"not a frame of the engine protocol (kind {kind!r}, length {length}): is something else writing to this stream?")
        body = _read_exactly(self.reader, length)
        if len(body) < length:
            raise WireError("the stream ended inside a frame")
        self.bytes_received += 5 + length
        return kind, body


def _frame(kind: bytes, body: bytes) -> bytes:
    return kind + len(body).to_bytes(4, "big") + body


def _read_exactly(reader: BinaryIO, count: int) -> bytes:
    parts, got = [], 0
    while got < count:
        part = reader.read(count - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


# ---- jobs as messages ---------------------------------------------------------------------------------------------


def request_params(request: GenerateRequest) -> dict[str, Any]:
    """A parsed request as the parameters that parse to it again (on the other side of the link)."""
    return {
        "prompt": request.prompt, "duration_sec": request.duration_sec, "seed": request.seed, "backend": request.backend,
        "priority": request.priority, **request.options.given(), **request.music.given(),
        **({"continue_from": request.continue_from} if request.continue_from is not None else {}),
    }


def job_to_message(job: Job) -> dict[str, Any]:
    """A job as JSON; its files (the audio a job continues, where a radio window goes) stay paths of the service's
    side: the link sends the audio along and maps the paths."""
    if isinstance(job, GenerateJob):
        return {"type": "job", "job": "generate", "request": request_params(job.request), "track_id": job.track_id,
                "model_version": job.model_version, "continue_from": job.continue_from}
    if isinstance(job, RadioWindowJob):
        fields = asdict(job)
        fields["request"] = request_params(job.request)
        return {"type": "job", "job": "radio_window", **fields}
    if isinstance(job, DownloadJob):
        return {"type": "job", "job": "download", "variant": job.variant}
    raise TypeError(f"not a job: {job!r}")


def job_from_message(message: dict[str, Any]) -> Job:
    kind = message.get("job")
    try:
        if kind == "generate":
            return GenerateJob(GenerateRequest.parse(message["request"]), message["track_id"], message["model_version"], message.get("continue_from"))
        if kind == "radio_window":
            fields = {k: v for k, v in message.items() if k not in ("type", "job")}
            return RadioWindowJob(**{**fields, "request": GenerateRequest.parse(fields["request"])})
        if kind == "download":
            return DownloadJob(message["variant"])
    except (KeyError, TypeError) as exc:
        raise LofiError(INVALID_PARAMS, f"a {kind} job the engine cannot read: {exc}") from None
    raise LofiError(INVALID_PARAMS, f"not a job the engine knows: {kind!r}")
