"""Playing a piece while it is composed (`generate {play: true}`): its decoded chunks go to the player as they are
made, as one track that grows, so the music is heard long before it is finished.

When composing is faster than playing, it starts with the first chunk. Otherwise it starts when the ETA says
playing will not catch up with composing: from then on, what is composed stays ahead of what is played. Should the
machine slow down anyway, the player waits for the next chunk (a clean pause, counted in its log) and goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from lofi_engine.shared.errors import LofiError

log = logging.getLogger("lofi.service")

ETA_MARGIN = 1.15
"""The ETA is trusted to within 15 %."""
CHUNK_LAG_SEC = 2.5
"""Audio is final in 2 s chunks, each with its 0.2 s of lookahead: what is playable lags composing by this much."""


def can_start(duration_sec: float, eta_sec: float | None) -> bool:
    """Whether playing a piece of ``duration_sec`` from its start now stays behind its composing, which ends in
    ``eta_sec``. Composing at an even pace from what is playable now, playing could only catch up at the end: it
    does not when the piece lasts longer than what is left to compose (and the chunks' lag)."""
    return eta_sec is not None and eta_sec * ETA_MARGIN + CHUNK_LAG_SEC <= duration_sec


@dataclass
class LiveTrack:
    track_id: str
    duration_sec: float
    info: dict[str, Any]
    chunks: list[str] = field(default_factory=list)
    """Paths of the chunks composed and not yet sent to the player."""
    eta_sec: float | None = None
    started: bool = False
    continues: bool = False
    """It continues audio: its first chunk is that audio, and the piece is longer by it."""
    head_sec: float = 0.0
    """The audio it continues, once its first chunk said how long it is."""

    @property
    def total_sec(self) -> float:
        return self.duration_sec + self.head_sec


@dataclass
class LivePlay:
    """The pieces asked to play while composed, following their engine events (called with the service's lock).

    ``start(entry)`` hands the player the first chunk as an open track (played now, or after what plays);
    ``extend(track_id, paths)`` the next ones; ``close(track_id)`` says it is complete; ``play_finished(track_id)``
    plays a finished track (when it never started while composing). When the player cannot take it (none is
    installed, say), ``failed(track_id, error)`` says so and the piece is only composed.
    """

    start: Callable[[dict[str, Any]], None]
    extend: Callable[[str, list[str]], None]
    close: Callable[[str], None]
    play_finished: Callable[[str], None]
    failed: Callable[[str, LofiError], None]
    tracks: dict[str, LiveTrack] = field(default_factory=dict)

    def watch(self, track_id: str, duration_sec: float, info: dict[str, Any], continues: bool = False) -> None:
        """Play ``track_id`` as it is composed: ``duration_sec`` of new music (after the audio it ``continues``)."""
        self.tracks.setdefault(track_id, LiveTrack(track_id, duration_sec, info, continues=continues))

    def playing(self, track_id: str) -> bool:
        """Its chunks are (or may be) read by the player: they must stay on disk until it is complete."""
        live = self.tracks.get(track_id)
        return live is not None and live.started

    def on_event(self, name: str, fields: dict[str, Any]) -> None:
        live = self.tracks.get(fields.get("track_id", ""))
        if live is None:
            return
        try:
            self._follow(live, name, fields)
        except LofiError as exc:
            self.tracks.pop(live.track_id, None)
            self.failed(live.track_id, exc)

    def _follow(self, live: LiveTrack, name: str, fields: dict[str, Any]) -> None:
        if name == "generation_progress":
            live.eta_sec = fields["eta_sec"]
        elif name == "generation_chunk":
            if live.continues and fields["start_sec"] == 0:  # the audio it continues, heard first
                live.head_sec = fields["duration_sec"]
                live.info = {**live.info, "duration_sec": live.total_sec}
            live.chunks.append(fields["path"])
        elif name == "generation_complete":
            del self.tracks[live.track_id]
            if live.started:
                self._send_chunks(live)
                self.close(live.track_id)
            else:
                self.play_finished(live.track_id)
            return
        elif name == "generation_error":
            del self.tracks[live.track_id]
            if live.started:  # what was composed plays to its end
                self.close(live.track_id)
            return
        if not live.started and live.chunks and can_start(live.total_sec, live.eta_sec):
            live.started = True
            first = live.chunks.pop(0)
            log.info("playing %s while it is composed (ETA %.1f s for %.1f s of music)", live.track_id, live.eta_sec or 0.0, live.total_sec)
            self.start({"track_id": live.track_id, "path": first, "info": live.info, "open": True})
        if live.started:
            self._send_chunks(live)

    def restarted(self, track_id: str) -> None:
        """Its job starts over (the engine's link dropped): a piece already playing keeps what was heard and plays no
        more of it (it would begin again); one not started yet is heard from the new start."""
        live = self.tracks.get(track_id)
        if live is None:
            return
        if live.started:
            del self.tracks[track_id]
            self.close(track_id)
        else:
            live.chunks.clear()

    def _send_chunks(self, live: LiveTrack) -> None:
        if live.chunks:
            self.extend(live.track_id, live.chunks)
            live.chunks = []
