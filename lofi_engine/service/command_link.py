"""The engine at the end of a command (``engine_command``: ``ssh -T box lofi engine --stdio``), in the role a
:class:`~lofi_engine.service.child_link.ChildLink` plays for the local engine process.

The command is started on the first job, in a process group of its own, its stderr (ssh's messages and the remote
engine's log) appended to the engine log. The handshake (:mod:`lofi_engine.shared.wire`) names both versions, and
tells what the other side has (models, providers, host). Jobs go as JSON, with the audio a job continues sent once
a link; the WAVs the engine writes come back with their events and are written here, where the service keeps its
tracks, the radio's segments and the chunks a player reads while a piece is composed. The queue, player, library,
radio and track store stay on this machine.

A command that cannot start, or that ends before the engine answered, is ENGINE_UNAVAILABLE with its own last
words (ssh's "Could not resolve hostname …"); a link that drops later is an engine death; a silent one is caught by
the same watchdog as the local engine.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
import wave
from pathlib import Path
from typing import Any, Callable

from lofi_engine.shared.errors import ENGINE_UNAVAILABLE, ENGINE_VERSION_MISMATCH, INVALID_AUDIO, WRITE_FAILED, LofiError
from lofi_engine.service.watched import Watched
from lofi_engine.shared.protocol import SHUTDOWN, Job, RadioWindowJob
from lofi_engine.shared.version import VERSION
from lofi_engine.shared.wire import FILE_FIELDS, LOCAL_PATHS, PROTOCOL, Wire, WireError, job_to_message
from lofi_engine.store.tracks import TRACK_ID, TrackCache

log = logging.getLogger("lofi.service")

CHUNK_NAME = re.compile(r"[0-9a-f]{16}\.wav|[0-9]{6}(\.[0-9]{12})?\.wav|[0-9]{12}\.wav")
"""The names of the WAVs an engine writes: a track (its id), a radio segment (its number) or its chunk, a chunk of a
track (its first sample): anything else an engine elsewhere names is refused (it writes nowhere else here)."""

HELLO_TIMEOUT_SEC = 60.0
"""How long a question that needs the other side's answer (what it has) waits for its handshake."""


class LinkedProcess:
    """The command's process, as the service sees an engine process (pid, exitcode, is_alive)."""

    def __init__(self, proc: subprocess.Popen, wire: Wire, command: str, log_from: int) -> None:
        self.proc, self.wire, self.command, self.log_from = proc, wire, command, log_from
        self.facts: dict[str, Any] | None = None
        """The other side's handshake: host, version, providers, what it has."""
        self.answered = threading.Event()
        self.failure: tuple[str, str] | None = None
        self.sent_sources: set[str] = set()
        self.job: Job | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def exitcode(self) -> int | None:
        return self.proc.poll()

    def is_alive(self) -> bool:
        return self.proc.poll() is None


class CommandLink(Watched):
    def __init__(
        self,
        name: str,
        log_path: Path,
        on_event: Callable[[str, dict], None],
        on_exit: Callable[[Any], None],
        cache: Callable[[], TrackCache],
    ) -> None:
        """``on_event(name, fields)`` for each event (its files already written here), ``on_exit(process)`` when the
        command ends, both from the reader thread; ``cache()``: the service's track store."""
        super().__init__(name)
        self.log_path = log_path
        self.python: str | None = None  # what runs the engine is the command's business
        self._on_event = on_event
        self._on_exit = on_exit
        self._cache = cache
        self._process: LinkedProcess | None = None
        self.facts: dict[str, Any] | None = None
        """The last handshake's facts (kept after the link ends: what `status` and :checkhealth show)."""

    def traffic(self) -> dict[str, int] | None:
        """Bytes sent and received over the link up now (what the engine elsewhere costs the network)."""
        process = self._process
        return {"sent": process.wire.bytes_sent, "received": process.wire.bytes_received} if process is not None else None

    def send(self, message: Job, settings: dict[str, Any], stall_timeout_sec: float) -> None:
        process = self._ready(settings, stall_timeout_sec)
        process.job = message
        body, blobs = job_to_message(message), ()
        source = getattr(message, "continue_from", None)
        if source is not None:
            try:
                data = Path(source).read_bytes()
            except OSError as exc:
                raise LofiError(INVALID_AUDIO, f"{source}: {exc.strerror or exc}") from None
            digest = hashlib.sha256(data).hexdigest()[:16]
            body["source_digest"] = digest
            if digest not in process.sent_sources:
                blobs = (data,)
                process.sent_sources.add(digest)
        self._write(process, body, blobs)

    def answer(self, settings: dict[str, Any], stall_timeout_sec: float) -> dict[str, Any]:
        """The other side's handshake (started for it, when no link is up): its host, version, providers, what it
        has; ENGINE_UNAVAILABLE (with the command's own words) or ENGINE_VERSION_MISMATCH when there is none."""
        process = self._ready(settings, stall_timeout_sec)
        if not process.answered.wait(HELLO_TIMEOUT_SEC):
            raise LofiError(ENGINE_UNAVAILABLE, f"the engine command `{process.command}` gave no answer in {HELLO_TIMEOUT_SEC:g} s")
        if process.facts is None:
            raise LofiError(*(process.failure or (ENGINE_UNAVAILABLE, self._last_words(process))))
        return process.facts

    def cancel_running(self) -> None:
        if self.alive:
            assert self._process is not None
            self._write(self._process, {"type": "cancel"})

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process, self._settings = self._process, None, None
        if process is None:
            return
        try:
            process.wire.send({"type": SHUTDOWN})
            process.proc.stdin.close()  # type: ignore[union-attr]
        except (OSError, ValueError):
            pass
        try:
            process.proc.wait(timeout=min(timeout, 2.0))
        except subprocess.TimeoutExpired:
            pass
        _end_group(process, timeout)

    def failure(self, process: LinkedProcess) -> tuple[str, str] | None:
        """Why the link never worked (ENGINE_UNAVAILABLE with the command's last words, a version mismatch), or
        None when it ended after the engine answered (then it is an engine death like any other)."""
        return process.failure

    # ---- the command's process ----------------------------------------------------------------------------------

    def _ready(self, settings: dict[str, Any], stall_timeout_sec: float) -> LinkedProcess:
        if self.alive and self._settings != settings:
            log.info("settings changed: restarting the %s link", self.name)
            self.stop()
        if not self.alive:
            self._start(settings, stall_timeout_sec)
        assert self._process is not None
        return self._process

    def _start(self, settings: dict[str, Any], stall_timeout_sec: float) -> None:
        command = str(settings["engine_command"])
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            log_from = log_file.tell()
            try:
                proc = subprocess.Popen(
                    shlex.split(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, start_new_session=True,
                )
            except (OSError, ValueError) as exc:
                raise LofiError(ENGINE_UNAVAILABLE, f"cannot start the engine command `{command}`: {getattr(exc, 'strerror', None) or exc}") from None
        process = LinkedProcess(proc, Wire(proc.stdout, proc.stdin), command, log_from)  # type: ignore[arg-type]
        self._process, self._settings, self._last_seen = process, settings, None
        sent = {k: v for k, v in settings.items() if k not in LOCAL_PATHS and k != "engine_command"}
        self._write(process, {"type": "hello", "protocol": PROTOCOL, "version": VERSION, "settings": sent})
        threading.Thread(target=self._read, args=(process,), name=f"lofi-{self.name}-link", daemon=True).start()
        threading.Thread(target=self._watch, args=(process, stall_timeout_sec, lambda p: _end_group(p, 5.0)), name=f"lofi-{self.name}-watchdog",
                         daemon=True).start()
        log.info("%s link %s started: %s", self.name, proc.pid, command)

    def _write(self, process: LinkedProcess, message: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> None:
        try:
            process.wire.send(message, blobs)
        except (OSError, ValueError):  # the command is gone: its reader reports it
            pass

    def _read(self, process: LinkedProcess) -> None:
        try:
            while True:
                got = process.wire.receive()
                if got is None:
                    break
                self._heard_from(process)
                self._handle(process, *got)
        except WireError as exc:
            log.warning("%s link %s: %s", self.name, process.pid, exc)
            if process.facts is None:
                process.failure = (ENGINE_UNAVAILABLE, f"`{process.command}` does not speak the engine protocol: {exc}")
        _end_group(process, 5.0)
        if process.facts is None and process.failure is None:
            process.failure = (ENGINE_UNAVAILABLE, self._last_words(process))
        process.answered.set()
        self._on_exit(process)

    def _handle(self, process: LinkedProcess, message: dict[str, Any], blobs: list[bytes]) -> None:
        kind = message["type"]
        if kind == "hello" and message.get("protocol") != PROTOCOL:
            process.failure = (ENGINE_VERSION_MISMATCH, (
                f"the engine on {message.get('host')} speaks protocol {message.get('protocol')} (lofi.nvim {message.get('version')}), this "
                f"service protocol {PROTOCOL} (lofi.nvim {VERSION}): install the same version on both machines"))
            process.answered.set()
            _end_group(process, 5.0)
        elif kind == "hello":
            process.facts = self.facts = {k: v for k, v in message.items() if k != "type"}
            process.answered.set()
            log.info("%s link %s: lofi.nvim %s on %s (%s)", self.name, process.pid, message.get("version"), message.get("host"),
                     ", ".join(message.get("providers") or []))
        elif kind == "error":
            process.failure = (str(message.get("code")), str(message.get("message")))
            log.warning("%s link %s: %s: %s", self.name, process.pid, *process.failure)
            _end_group(process, 5.0)
        elif kind == "event":
            name, fields = message["name"], dict(message["fields"])
            if blobs or message.get("from_chunks"):
                try:
                    fields = self._place(process, name, fields, blobs[0] if blobs else None, message.get("from_chunks"))
                except LofiError as exc:
                    self._lost_file(process, name, fields, exc)
                    return
            if name == "download_complete" and process.facts is not None:
                process.facts["available"][fields["variant"]] = True
            self._on_event(name, fields)

    def _place(self, process: LinkedProcess, name: str, fields: dict[str, Any], blob: bytes | None, from_chunks: int | None = None) -> dict[str, Any]:
        """Write the event's WAV where the service keeps it (as the local engine would have), and name it; a track
        whose chunks came (``from_chunks``: its frames) is those chunks joined."""
        key, remote = FILE_FIELDS[name], Path(fields[FILE_FIELDS[name]])
        cache, job = self._cache(), process.job
        if not (TRACK_ID.fullmatch(str(fields.get("track_id", "0" * 16))) and CHUNK_NAME.fullmatch(remote.name)):
            raise LofiError(WRITE_FAILED, f"{name} names a file this side does not write: {fields.get('track_id')!r}, {remote.name!r}")
        if name == "generation_complete":
            local = cache.wav_path(fields["track_id"])
        elif name == "generation_chunk":
            local = cache.chunks_dir(fields["track_id"]) / remote.name
        elif isinstance(job, RadioWindowJob):  # the window the service named: its segment, and its chunks beside it
            segment = Path(job.segment_path)
            if name == "radio_segment":
                local = segment
            else:
                local = segment.with_name(remote.name)
                fields["segment_path"] = str(segment)
        else:
            raise LofiError(WRITE_FAILED, f"{name} for no radio window")
        if blob is None:
            blob = _joined(sorted(cache.chunks_dir(fields["track_id"]).glob("*.wav")), int(from_chunks or 0))
        _write_atomically(local, blob)
        fields[key] = str(local)
        if name == "generation_complete":
            cache.put(fields)
        return fields

    def _lost_file(self, process: LinkedProcess, name: str, fields: dict[str, Any], exc: LofiError) -> None:
        """A WAV that could not be written here: a track or a window fails with WRITE_FAILED; a chunk is left out
        (the finished track still comes)."""
        log.warning("%s: %s", name, exc.message)
        if name == "generation_complete":
            self._on_event("generation_error", {"track_id": fields["track_id"], **exc.to_dict()})
        elif name == "radio_segment":
            self._on_event("radio_error", {"stream_id": fields["stream_id"], **exc.to_dict()})

    def _last_words(self, process: LinkedProcess) -> str:
        """What the command said on stderr before it ended (ssh's reason), for ENGINE_UNAVAILABLE."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(process.log_from)
                said = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
        except OSError:
            said = []
        code = process.proc.poll()
        return f"the engine command `{process.command}` ended (exit code {code}) before the engine answered" + (f": {said[-1]}" if said else "")


def _joined(chunks: list[Path], frames: int) -> bytes:
    """One WAV of the chunks' samples, in order (each chunk a 16-bit PCM WAV of the same format): the track they are."""
    out = io.BytesIO()
    try:
        with wave.open(out, "wb") as joined:
            for n, chunk in enumerate(chunks):
                with wave.open(str(chunk), "rb") as part:
                    if n == 0:
                        joined.setparams(part.getparams())
                    joined.writeframes(part.readframes(part.getnframes()))
            if not chunks or joined.getnframes() != frames:
                raise LofiError(WRITE_FAILED, f"the track's chunks hold {joined.getnframes() if chunks else 0} of its {frames} frames")
    except (OSError, wave.Error, EOFError) as exc:
        raise LofiError(WRITE_FAILED, f"cannot join the track's chunks: {exc}") from None
    return out.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_bytes(data)
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise LofiError(WRITE_FAILED, f"cannot write {path}: {exc.strerror or exc}") from None


def _end_group(process: LinkedProcess, timeout: float) -> None:
    """End the command and what it started (its own process group), and wait for it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("engine command %s still there %.0f s after it was killed", process.pid, timeout)
