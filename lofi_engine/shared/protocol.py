"""What travels over the pipe between the service and the engine process.

The service sends :class:`GenerateJob`, :class:`DownloadJob` or :data:`SHUTDOWN`; the engine answers with events,
``(name, fields)`` pairs declared in :mod:`lofi_engine.shared.events`, and :data:`HEARTBEAT` every
:data:`HEARTBEAT_SEC` while it runs (a stopped or frozen engine sends none: the service's watchdog notices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from lofi_engine.shared.request import GenerateRequest

SHUTDOWN = "shutdown"
HEARTBEAT = "heartbeat"
HEARTBEAT_SEC = 1.0
PLAYER_STATE = "player_state"
"""The player process's ``(PLAYER_STATE, fields)``: what plays, where, at what volume (kept by the service for
`status`, not passed on as an event)."""


@dataclass(frozen=True)
class GenerateJob:
    request: GenerateRequest
    track_id: str
    model_version: str
    continue_from: str | None = None
    """The audio file the piece continues (``request.continue_from`` resolved: a track id's WAV)."""


@dataclass(frozen=True)
class DownloadJob:
    variant: str
    """A variant's name, or ``catalogue.ENCODEC`` (EnCodec's weights)."""


@dataclass(frozen=True)
class RadioWindowJob:
    """The next window of the radio's endless MusicGen stream ``stream_id`` (the engine keeps the stream's codes
    between windows; a new stream id lets the previous stream go). ``request.prompt`` steers it."""

    stream_id: str
    request: GenerateRequest
    window_sec: float
    context_sec: float
    segment_path: str
    """Where the window's audio goes (the service names it, in the radio's folder of the cache)."""
    window: int = 0
    """How many windows of the stream came before: an engine that has not got the stream's codes for a later window
    (it was restarted) starts the stream over, and says so."""
    chunks: bool = False
    """Its audio goes out 2 s at a time while it is composed (`radio_chunk`, with the window's ETA), when the window
    is the stream's first: the radio is heard before its first window is finished."""
    continue_from: str | None = None
    """The audio file the stream continues (the user's own music, or a track's WAV): its codes start the stream."""


Job = Union[GenerateJob, DownloadJob, RadioWindowJob]


@dataclass(frozen=True)
class PlayerCommand:
    """play / add / insert (``tracks``: track_id, path, info, follows), remove (``track_id``), clear, pause, resume,
    stop, skip, settings (``volume``, ``loop``, ``crossfade_sec``)."""

    name: str
    params: dict = field(default_factory=dict)
    seq: int = 0
    """The service's count of the commands it sent; the player's state reports name the last one it handled."""
