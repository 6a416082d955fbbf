"""The player process's loop: commands from the service in, the mixed stream out to the player, events back.

The stream is paced by a clock that runs while something plays: the loop keeps at most :data:`LEAD_SEC` rendered
ahead of it, so pause, skip and volume act within that (plus the player's own buffer), and a player that does not
pace itself (mpv writing to a file) still receives the stream at the speed a sound card would take it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from lofi_engine.playback.audio import JOIN_CONTEXT, continue_resampled, read_track, to_mixer_rate
from lofi_engine.playback.mixer import RATE, Mixer, Track
from lofi_engine.playback.sink import PlayerSink
from lofi_engine.shared.errors import LofiError
from lofi_engine.shared.events import event
from lofi_engine.shared.protocol import HEARTBEAT, HEARTBEAT_SEC, PLAYER_STATE, SHUTDOWN, PlayerCommand

BLOCK = RATE // 20  # 50 ms
RECENT = 4
LEAD_SEC = 0.2
STALL_SEC = 0.5
"""The audio player took this much longer than real time to take the stream (stopped, suspended, swapped out): the
clock starts again from what it actually took, so the stream goes on from there instead of racing to catch up."""
log = logging.getLogger("lofi.player")


class Player:
    def __init__(self, conn: Connection, command: tuple[str, ...]) -> None:
        self.conn = conn
        self.mixer = Mixer()
        self.sink = PlayerSink(command)
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.paused = False
        self.played = 0.0  # seconds the clock has run (only while playing)
        self.resumed_at: float | None = None  # when the clock last started
        self.written = 0  # frames sent to the player
        self.last_beat = 0.0
        self.starting: list[str] = []  # the ids of a play request whose tracks are still being read
        self.loads: queue.Queue[tuple[str, list[dict[str, Any]], str | None, int]] = queue.Queue()
        self.epoch = 0  # bumped by a stop: loads asked for earlier are dropped when they arrive
        self.handled = 0  # the seq of the last command handled (its state reports say it)
        self.stopping = False  # a stop was handled: what still sounds is its fade-out
        self.recent: dict[str, Track] = {}  # the last tracks read (the loader's own): what a continuation continues
        self.growing: dict[str, tuple[Any, int]] = {}  # open tracks (the loader's own): their last input samples and rate
        self.waiting_since: float | None = None  # when playing caught up with a track being composed

    # ---- the loop ---------------------------------------------------------------------------------------------------

    def serve(self) -> None:
        threading.Thread(target=self._receive, name="lofi-player-commands", daemon=True).start()
        threading.Thread(target=self._loader, name="lofi-player-loader", daemon=True).start()
        try:
            while True:
                timeout = self._next_block_in()
                try:
                    message = self.inbox.get(timeout=timeout)
                except queue.Empty:
                    message = None
                if message == SHUTDOWN:
                    return
                if message is not None:
                    self._handle(message)
                self._beat()
                self._write_due()
        finally:
            self.sink.close()

    def _receive(self) -> None:
        while True:
            try:
                self.inbox.put(self.conn.recv())
            except (EOFError, OSError):
                self.inbox.put(SHUTDOWN)
                return

    def _next_block_in(self) -> float:
        if self.mixer.idle or self.paused or self.mixer.waiting:
            return HEARTBEAT_SEC
        ahead = self.written / RATE - self._clock()
        return max(0.0, min(ahead - LEAD_SEC, HEARTBEAT_SEC))

    def _heard_sec(self) -> float:
        """Where in the current track the listener is: what was rendered, less what the player has not played yet."""
        return max(0.0, self.mixer.position / RATE - (self.written / RATE - self._clock()))

    def _clock(self) -> float:
        return self.played + (time.monotonic() - self.resumed_at if self.resumed_at is not None else 0.0)

    def _write_due(self) -> None:
        self._follow_wait()
        while not self.mixer.idle and not self.paused and not self.mixer.waiting and self.written / RATE < self._clock() + LEAD_SEC:
            if self.resumed_at is None:  # the first block of a start: the clock starts with it
                self.resumed_at = time.monotonic()
            behind = self._clock() - self.written / RATE
            if behind > STALL_SEC:
                log.warning("the audio player took %.1f s longer than real time to take the stream: going on from where it is", behind)
                self.played, self.resumed_at = self.written / RATE, time.monotonic()
                return  # the commands that came meanwhile first
            block, events = self.mixer.render(BLOCK)
            try:
                self.sink.open()
                self.sink.write(block)
            except LofiError as exc:
                self._fail(exc)
                return
            self.written += len(block)
            if self.mixer.idle:  # the end of the playlist, or a stop: the player plays out what it holds first
                self._halt()
            for name, fields in events:  # after the samples they describe reached the player
                self._emit(name, fields)
            self._follow_wait()

    def _follow_wait(self) -> None:
        """Playing caught up with a track being composed: the clock stops once what was written has played, and
        runs again from there when more arrives (nothing is skipped, nothing repeated)."""
        now = time.monotonic()
        if self.mixer.waiting and self.waiting_since is None:
            self.waiting_since = now
            self.played, self.resumed_at = self._clock(), None
            log.info("playing caught up with the track being composed: waiting for more of it (%d time%s so far)",
                     self.mixer.waits, "" if self.mixer.waits == 1 else "s")
            self.last_beat = 0.0
        elif not self.mixer.waiting and self.waiting_since is not None:
            self.played = min(self.written / RATE, self.played + (now - self.waiting_since))
            self.resumed_at, self.waiting_since = now, None
            self.last_beat = 0.0

    def _beat(self) -> None:
        now = time.monotonic()
        if now - self.last_beat >= HEARTBEAT_SEC / 2:
            self.last_beat = now
            playing = None if self.stopping else self.mixer.playing  # a stop's fade-out (and mpv's play-out) is stopped
            state = {
                "state": "starting" if self.starting else "stopped" if playing is None else "paused" if self.paused
                else "buffering" if self.mixer.waiting else "playing",
                "track_id": self.starting[0] if self.starting else playing.track_id if playing is not None else None,
                "position_sec": round(self._heard_sec(), 2) if playing else 0.0,
                "volume": round(self.mixer.volume * 100),
                "playlist": self.starting or [t.track_id for t in self.mixer.playlist],
                "loop": self.mixer.loop,
                "shuffle": self.mixer.shuffled is not None,
                "crossfade_sec": self.mixer.crossfade_sec,
                "duration_sec": _duration(playing) if playing is not None and not self.starting else None,
                "info": dict(playing.info) if playing is not None and not self.starting else {},
                "seq": self.handled,
            }
            self.conn.send((PLAYER_STATE, state))
            self.conn.send(HEARTBEAT)

    # ---- commands ---------------------------------------------------------------------------------------------------

    def _handle(self, message: PlayerCommand | tuple[str, Any]) -> None:
        try:
            if isinstance(message, PlayerCommand):
                self._command(message)
            else:  # ("loaded", …) from a loader thread
                self._loaded(*message[1])
        except LofiError as exc:
            self._fail(exc)
        if self.mixer.idle:  # what ended without a sample left to render (a stop during a stop's fade-out) is said now
            for name, fields in self.mixer.take_events():
                self._emit(name, fields)

    def _command(self, command: PlayerCommand) -> None:
        name, params = command.name, command.params
        self.handled = command.seq
        if name == "play":
            self.starting = [t["track_id"] for t in params["tracks"]]
        if name in ("play", "add", "insert", "extend"):
            self.loads.put((name, params["tracks"], params.get("after"), self.epoch))
        elif name == "close":  # after the loads asked for before it: every stretch of the track is in first
            self.loads.put(("close", [], params["track_id"], self.epoch))
        elif name == "remove":  # after the loads asked for before it: a track still being read is removed too
            self.loads.put(("remove", [], params["track_id"], self.epoch))
        elif name == "clear":
            self.mixer.clear()
        elif name == "pause" and not self.paused and not self.mixer.idle:
            self.paused = True
            self.played, self.resumed_at = self._clock(), None
            self._emit("playback_pause", {"track_id": self.mixer.playing.track_id})  # type: ignore[union-attr]
        elif name == "resume" and self.paused:
            self.paused = False
            self.resumed_at = time.monotonic()
            self._emit("playback_resume", {"track_id": self.mixer.playing.track_id} if self.mixer.playing else {"track_id": None})
        elif name == "stop":  # the loop renders the short fade-out, then lets the player go
            if self.paused:  # the clock runs again for the fade-out
                self.paused, self.resumed_at = False, time.monotonic()
            self.epoch += 1  # tracks still being read were asked for before the stop: they will not play
            self.starting = []
            self.stopping = True
            self.mixer.stop()
        elif name == "skip":
            self.mixer.skip()
        elif name == "seek" and self.mixer.playing is not None:
            target = params["to"] if "to" in params else self._heard_sec() + params["by"]
            self.mixer.seek(target)
        elif name == "shuffle":
            self.mixer.shuffle(bool(params["enabled"]))
        elif name == "settings":
            self.mixer.volume = params.get("volume", self.mixer.volume * 100) / 100
            self.mixer.loop = params.get("loop", self.mixer.loop)
            self.mixer.crossfade_sec = params.get("crossfade_sec", self.mixer.crossfade_sec)
        self.last_beat = 0.0  # report the new state at once

    def _loader(self) -> None:
        """Read (and resample) tracks away from the loop, so the music playing does not wait for them; in the order
        they were asked for, so that a track always comes after the one it continues."""
        while True:
            self._load(*self.loads.get())

    def _load(self, name: str, tracks: list[dict[str, Any]], after: str | None, epoch: int) -> None:
        """A track that continues one read before is resampled as one piece with it (and that one's end is
        corrected)."""
        if name in ("remove", "close"):
            if name == "close":
                self.growing.pop(str(after), None)
            self.inbox.put(("loaded", (name, [], None, [], after, epoch)))
            return
        if name == "extend":
            self._load_more(tracks, after, epoch)
            return
        loaded, patches = [], []
        # A track listed more than once (or already in the playlist) is held decoded once: its copies share the audio.
        held = {t.track_id: t for t in list(self.mixer.playlist) if t.follows is None and not t.open}
        try:
            for spec in tracks:
                same = held.get(spec["track_id"])
                if same is not None and spec.get("follows") is None:
                    loaded.append(Track(spec["track_id"], same.audio, spec.get("info", {}), None, same.source_tail, same.source_rate))
                    continue
                before = self.recent.get(str(spec.get("follows")))
                raw, rate = read_track(Path(spec["path"]))
                if before is not None and before.source_tail is not None and before.source_rate == rate:
                    corrected, audio = continue_resampled(before.source_tail, raw, rate)
                    patches.append((before, corrected))
                else:
                    audio = to_mixer_rate(raw, rate)
                tail = raw[len(raw) - JOIN_CONTEXT :] if len(raw) >= JOIN_CONTEXT else None
                loaded.append(Track(spec["track_id"], audio, spec.get("info", {}), spec.get("follows"), tail, rate, open=bool(spec.get("open"))))
                if spec.get("open"):
                    self.growing[spec["track_id"]] = (raw[len(raw) - JOIN_CONTEXT :], rate)
                if spec.get("follows") is None and not spec.get("open"):
                    held[spec["track_id"]] = loaded[-1]
                self.recent[spec["track_id"]] = loaded[-1]
                while len(self.recent) > RECENT:
                    self.recent.pop(next(iter(self.recent)))
        except LofiError as exc:
            self.inbox.put(("loaded", (name, None, exc, [], after, epoch)))
            return
        self.inbox.put(("loaded", (name, loaded, None, patches, after, epoch)))

    def _load_more(self, tracks: list[dict[str, Any]], after: str | None, epoch: int) -> None:
        """The next stretches of an open track: each resampled as one piece with what came before it."""
        try:
            for spec in tracks:
                before = self.growing.get(spec["track_id"])
                if before is None:
                    continue  # closed or never opened here (a stop came between): nothing to extend
                raw, rate = read_track(Path(spec["path"]))
                tail, tail_rate = before
                corrected, audio = continue_resampled(tail, raw, rate) if tail_rate == rate and len(tail) else (tail[:0], to_mixer_rate(raw, rate))
                newest_end = np.concatenate([tail, raw])[-JOIN_CONTEXT:]
                self.growing[spec["track_id"]] = (newest_end, rate)
                if (grown := self.recent.get(spec["track_id"])) is not None:
                    grown.source_tail = newest_end  # a track that continues it is resampled with its end, not its first chunk's
                self.inbox.put(("loaded", ("extend", [Track(spec["track_id"], audio)], None, [(spec["track_id"], corrected)], after, epoch)))
        except LofiError as exc:  # the piece failed and its chunks are gone: what arrived plays to its end
            log.warning("%s; playing what was composed of it", exc.message)
            self.growing.pop(spec["track_id"], None)
            self.inbox.put(("loaded", ("close", [], None, [], spec["track_id"], epoch)))

    def _loaded(
        self, name: str, tracks: list[Track] | None, error: LofiError | None, patches: list[tuple[Track, Any]], after: str | None, epoch: int
    ) -> None:
        if epoch != self.epoch:
            return
        if name == "play":
            self.starting = []
        if error is not None:
            raise error
        assert tracks is not None
        if name == "remove":
            self.mixer.remove(str(after))
            return
        if name == "close":
            self.mixer.close(str(after))
            return
        if name == "extend":
            for track, (track_id, corrected) in zip(tracks, patches):
                self.mixer.extend(track_id, corrected, track.audio)
            return
        for before, corrected in patches:  # the end of the track continued, now resampled with what follows it
            before.audio[len(before.audio) - len(corrected) :] = corrected
        if name == "play":
            self.paused, self.stopping = False, False
            self.mixer.start(tracks)
        elif name == "insert":  # the radio's next piece: after the one it follows, else after the one playing
            for track in reversed(tracks):
                self.mixer.insert_next(track, after)
        else:
            for track in tracks:
                self.mixer.add(track)

    # ---- helpers ----------------------------------------------------------------------------------------------------

    def _halt(self) -> None:
        self.sink.close()
        self.played, self.resumed_at, self.written = 0.0, None, 0
        self.last_beat = 0.0  # report the stop at once

    def _fail(self, exc: LofiError) -> None:
        playing = self.mixer.playing
        log.warning("playback failed: %s", exc.message)
        self.mixer.reset()
        self.paused = False
        self._halt()
        self._emit("playback_end", {"track_id": playing.track_id if playing else None, "reason": "error", "code": exc.code, "message": exc.message})

    def _emit(self, name: str, fields: dict[str, Any]) -> None:
        self.conn.send(event(name, fields))


def _duration(track: Track) -> float:
    """Its length; a track still being composed says the length it will have."""
    if track.open and isinstance(track.info.get("duration_sec"), (int, float)):
        return float(track.info["duration_sec"])
    return round(track.frames / RATE, 2)
