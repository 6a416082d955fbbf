"""The playlist rendered as one stream: consecutive tracks crossfaded, the playlist (or a single track) looped
without a gap, volume applied, skip and stop at any sample. A track still being composed (``open``) grows as its
audio arrives; should playing catch up with composing, it waits at its end (a short fade out, then nothing) and
goes on from the next sample when more arrives (a short fade in): nothing is skipped or repeated.

Numpy in, numpy out, no clock and no device: :meth:`Mixer.render` returns the next block of samples and the
events that happened inside it; the player process decides when to call it and where the samples go.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RATE = 48000
CHANNELS = 2
SKIP_FADE_SEC = 0.05
"""A skip or stop does not cut mid-wave: the outgoing track fades out over this much."""
WAIT_FADE_FRAMES = 240
"""Waiting for more of a track being composed does not cut mid-wave either: 5 ms out, and 5 ms in after."""
OPEN_HOLD_FRAMES = 96
"""The last frames of a track being composed are held back: the next stretch corrects them (they are resampled
with what follows them) before they are played."""


@dataclass(eq=False)
class Track:
    track_id: str
    audio: np.ndarray
    """float32 ``[samples, 2]`` at :data:`RATE`."""
    info: dict[str, Any] = field(default_factory=dict)
    """What events say about it (prompt, duration, backend)."""
    follows: str | None = None
    """The track it continues (the radio's next segment): played right after that one, it joins without a fade."""
    source_tail: np.ndarray | None = None
    """Its last input samples at the file's own rate, for the track that continues it to be resampled as one."""
    source_rate: int = RATE
    open: bool = False
    """Still being composed: more of its audio will come (:meth:`Mixer.extend`) until it is closed."""

    @property
    def frames(self) -> int:
        return len(self.audio)

    @property
    def playable(self) -> int:
        """Frames that may be played now (all but the held-back end while it is open)."""
        return max(0, self.frames - OPEN_HOLD_FRAMES) if self.open else self.frames


@dataclass
class _Transition:
    """Track ``outgoing`` (from ``out_at``) fading out while ``incoming`` (from 0) fades in, over ``length`` frames."""

    outgoing: Track
    out_at: int
    incoming: Track | None
    length: int
    reason: str
    done: int = 0


@dataclass
class Mixer:
    crossfade_sec: float = 2.0
    loop: bool = True
    """Start over at the end of the playlist (one track: loop it, its tail crossfaded into its head)."""
    volume: float = 1.0
    """Linear gain, 0 to 1."""
    playlist: list[Track] = field(default_factory=list)
    current: int | None = None
    """Index in the playlist of the track playing (the incoming one during a transition)."""
    position: int = 0
    """Frames of the current track rendered."""
    shuffled: list[Track] | None = None
    """While shuffle is on: the playlist in the order it had before (what turning shuffle off restores)."""
    waits: int = 0
    """Times playing caught up with a track being composed and waited for it."""
    _waiting: Track | None = None
    """The open track whose end was reached: nothing is rendered until more of it arrives (or it is closed)."""
    _fade_in: int = 0
    """Frames of the fade-in still to apply after a wait."""
    _fade_out_end: int | None = None
    """Where the fade out before a wait ends (the end of what had arrived when it began)."""
    _transition: _Transition | None = None
    _events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    # ---- playlist ---------------------------------------------------------------------------------------------

    def add(self, track: Track) -> None:
        self.playlist.append(track)
        if self.shuffled is not None:
            self.shuffled.append(track)

    def shuffle(self, enabled: bool, rng: random.Random | None = None) -> None:
        """On: the track playing stays, the others follow it in a random order. Off: the order from before (tracks
        added meanwhile at the end), the track playing where it was."""
        playing = self.playing
        if enabled and self.shuffled is None:
            self.shuffled = list(self.playlist)
            rest = [t for t in self.playlist if t is not playing]
            (rng or random.Random()).shuffle(rest)
            self.playlist = ([playing] if playing is not None else []) + rest
        elif not enabled and self.shuffled is not None:
            kept = [t for t in self.shuffled if t in self.playlist]
            self.playlist = kept + [t for t in self.playlist if t not in kept]
            self.shuffled = None
        else:
            return
        self.current = self.playlist.index(playing) if playing is not None else None

    def seek(self, seconds: float) -> float:
        """Play the current track from ``seconds`` (clamped to the track; a transition under way ends first).
        Returns where it plays from."""
        playing = self.playing
        if playing is None:
            return 0.0
        if self._transition is not None:
            t, self._transition = self._transition, None
            self._end(t.outgoing, t.reason)
            if t.incoming is None:
                self.current = None
                return 0.0
        self.position = min(max(0, int(seconds * RATE)), max(0, playing.playable - self._frames(SKIP_FADE_SEC)))
        self._waiting, self._fade_out_end, self._fade_in = None, None, 0
        return self.position / RATE

    def extend(self, track_id: str, corrected_end: np.ndarray, audio: np.ndarray) -> None:
        """More of the open track ``track_id``: its held-back end corrected, then ``audio`` after it. A wait for it ends."""
        for track in self._tracks_named(track_id):
            if not track.open:
                continue
            if len(corrected_end):
                track.audio[track.frames - len(corrected_end) :] = corrected_end
            track.audio = np.concatenate([track.audio, audio])
            self._resume_if_waiting_for(track)

    def close(self, track_id: str) -> None:
        """The track is composed: it plays to its end like any other."""
        for track in self._tracks_named(track_id):
            track.open = False
            self._resume_if_waiting_for(track)

    def _tracks_named(self, track_id: str) -> list[Track]:
        found = [t for t in self.playlist if t.track_id == track_id]
        t = self._transition
        for extra in ([t.outgoing, t.incoming] if t is not None else []):
            if extra is not None and extra.track_id == track_id and extra not in found:
                found.append(extra)
        return found

    def _resume_if_waiting_for(self, track: Track) -> None:
        if self._waiting is track and (track.playable > self.position or not track.open):
            self._waiting = None
            self._fade_in = WAIT_FADE_FRAMES if track.playable > self.position else 0

    @property
    def waiting(self) -> bool:
        """Playing caught up with a track being composed: nothing to render until more of it arrives."""
        return self._waiting is not None and self.playing is self._waiting

    def insert_next(self, track: Track, after: str | None = None) -> None:
        """Right after ``after`` (or the track it continues) when that one is in the playlist, else right after the
        track playing (at the end when nothing plays)."""
        ids = [t.track_id for t in self.playlist]
        anchor = after if after in ids else track.follows
        if anchor is not None and anchor in ids:
            index = ids.index(anchor) + 1
        else:
            index = len(self.playlist) if self.current is None else self.current + 1
        self.playlist.insert(index, track)
        if self.shuffled is not None:
            self.shuffled.append(track)
        if self.current is not None and index <= self.current:
            self.current += 1

    def remove(self, track_id: str) -> None:
        """Drop a track from the playlist (skipping past it first when it is the one playing)."""
        playing = self.playing
        if playing is not None and playing.track_id == track_id:
            if not self.skip() or self.playing is playing:
                self.stop("skipped")
        playing = self.playing
        self.playlist = [t for t in self.playlist if t.track_id != track_id]
        self.current = self.playlist.index(playing) if playing is not None and playing in self.playlist else None
        self._forget_removed()

    def clear(self) -> None:
        """Everything but the track playing."""
        playing = self.playing
        self.playlist = [playing] if playing is not None else []
        self.current = 0 if playing is not None else None
        self._forget_removed()

    def _forget_removed(self) -> None:
        if self.shuffled is not None:
            self.shuffled = [t for t in self.shuffled if t in self.playlist]

    @property
    def playing(self) -> Track | None:
        if self._transition is not None and self._transition.incoming is not None:
            return self._transition.incoming
        if self._transition is not None:
            return self._transition.outgoing
        return self.playlist[self.current] if self.current is not None and self.current < len(self.playlist) else None

    # ---- control ----------------------------------------------------------------------------------------------

    def start(self, tracks: list[Track]) -> None:
        """Make ``tracks`` the playlist and play its first now (whatever plays fades out quickly, as "skipped")."""
        playing = self.playing
        self.playlist, self.shuffled = list(tracks), None
        if playing is not None:
            self._begin(playing, self._playing_at(), self.playlist[0], self._frames(SKIP_FADE_SEC), "skipped")
        else:
            self._start(0)
        self.current = 0

    def reset(self) -> None:
        """Nothing plays and the playlist is empty, at once (after the player failed)."""
        self.playlist, self.current, self.position, self._transition, self.shuffled = [], None, 0, None, None
        self._waiting = None

    def skip(self) -> bool:
        """Cross to the next track now (the configured crossfade, shortened to what is left); False at the end of a
        playlist that does not loop (then it stops)."""
        playing = self.playing
        if playing is None:
            return False
        following = self._following()
        if following is None:
            self.stop("skipped")
            return False
        length = min(self._frames(self.crossfade_sec), self._fade_room(playing, self.playlist[following]))
        self._begin(playing, self._playing_at(), self.playlist[following], max(length, self._frames(SKIP_FADE_SEC)), "skipped")
        self.current = following
        return True

    def _fade(self, track: Track, following: Track, wanted: int) -> int:
        """The crossfade from ``track`` into ``following``: none into its own continuation, else ``wanted``
        shortened to half of either track."""
        if following.follows is not None and following.follows == track.track_id:
            return 0
        return min(wanted, self._fade_room(track, following))

    def stop(self, reason: str = "stopped") -> None:
        """Fade out quickly and end; the playlist stays."""
        playing = self.playing
        if playing is None:
            return
        self._begin(playing, self._playing_at(), None, self._frames(SKIP_FADE_SEC), reason)
        self.current = None

    def take_events(self) -> list[tuple[str, dict[str, Any]]]:
        """The events that happened outside a render (a stop of a stop ends at once), for the caller to send."""
        events, self._events = self._events, []
        return events

    @property
    def idle(self) -> bool:
        return self.playing is None

    # ---- rendering --------------------------------------------------------------------------------------------

    def render(self, frames: int) -> tuple[np.ndarray, list[tuple[str, dict[str, Any]]]]:
        """The next ``frames`` of the stream (silence where nothing plays) and the events inside them; fewer when it
        comes to wait for a track being composed (nothing is rendered while it waits)."""
        out = np.zeros((frames, CHANNELS), dtype=np.float32)
        done = 0
        while done < frames and not self.idle and not self.waiting:
            done += self._render_some(out[done:])
        if self.waiting:
            out = out[:done]
        events, self._events = self._events, []
        if self.volume != 1.0:
            out *= np.float32(self.volume)
        return out, events

    def _render_some(self, out: np.ndarray) -> int:
        if self._transition is not None:
            return self._render_transition(out)
        track = self.playlist[self.current]  # type: ignore[index]
        if track.open:
            return self._render_open(track, out)
        following = self._following()
        fade = 0 if following is None else self._fade(track, self.playlist[following], self._frames(self.crossfade_sec))
        fade_from = track.frames - fade
        if self.position >= fade_from:
            if following is None or fade == 0:  # the end, or a seamless join: the next track starts at this sample
                self._end(track, "finished")
                self.current = following
                if following is not None:
                    self._start(following)
                return 0
            self._begin(track, self.position, self.playlist[following], track.frames - self.position, "finished")
            self.current = following
            return 0
        n = min(len(out), fade_from - self.position)
        out[:n] = track.audio[self.position : self.position + n]
        self._apply_fade_in(out[:n])  # the first frames after a wait for the track, now composed
        self.position += n
        return n

    def _render_open(self, track: Track, out: np.ndarray) -> int:
        """A track being composed: up to what has arrived; when nothing more has arrived by its last
        :data:`WAIT_FADE_FRAMES`, they fade out (a fade once begun is finished) and it waits, unless more came
        meanwhile (then it fades back in at once)."""
        if self._fade_out_end is None and self.position >= track.playable - WAIT_FADE_FRAMES:
            self._fade_out_end = track.playable
        end = self._fade_out_end if self._fade_out_end is not None else track.playable - WAIT_FADE_FRAMES
        n = min(len(out), end - self.position)
        out[:n] = track.audio[self.position : self.position + n]
        if self._fade_out_end is not None:
            length = min(WAIT_FADE_FRAMES, self._fade_out_end)
            left = np.arange(end - self.position, end - self.position - n, -1, dtype=np.float32)
            out[:n] *= (left / max(1, length))[:, None]
        self._apply_fade_in(out[:n])
        self.position += n
        if self._fade_out_end is not None and self.position >= self._fade_out_end:
            self._fade_out_end = None
            if track.playable > self.position or not track.open:
                self._fade_in = WAIT_FADE_FRAMES  # more arrived during the fade out: back in without waiting
            else:
                self._waiting = track
                self.waits += 1
        return n

    def _apply_fade_in(self, block: np.ndarray) -> None:
        if self._fade_in and len(block):
            n = min(len(block), self._fade_in)
            done = WAIT_FADE_FRAMES - self._fade_in
            block[:n] *= (np.arange(done + 1, done + n + 1, dtype=np.float32) / WAIT_FADE_FRAMES)[:, None]
            self._fade_in -= n

    def _render_transition(self, out: np.ndarray) -> int:
        t = self._transition
        assert t is not None
        n = min(len(out), t.length - t.done)
        ramp = (np.arange(t.done, t.done + n, dtype=np.float64) + 0.5) / t.length * (np.pi / 2)
        fade_out = np.cos(ramp).astype(np.float32)[:, None]
        fade_in = np.sin(ramp).astype(np.float32)[:, None]
        out[:n] = _take(t.outgoing.audio, t.out_at + t.done, n) * fade_out
        if t.incoming is not None:
            out[:n] += _take(t.incoming.audio, t.done, n) * fade_in
        t.done += n
        if t.done >= t.length:
            self._transition = None
            self._end(t.outgoing, t.reason)
            self.position = t.length
            if t.incoming is None:
                self.current = None
        return n

    # ---- helpers ------------------------------------------------------------------------------------------------

    def _begin(self, outgoing: Track, out_at: int, incoming: Track | None, length: int, reason: str) -> None:
        """Fade ``outgoing`` out from ``out_at`` (and ``incoming`` in, when there is one) over ``length`` frames."""
        self._waiting, self._fade_out_end, self._fade_in = None, None, 0
        if self._transition is not None:  # a transition in progress ends now; its incoming track fades out instead
            previous, self._transition = self._transition, None
            self._end(previous.outgoing, previous.reason)
            if previous.incoming is None:  # it was stopping: nothing is left to fade out
                if incoming is not None:
                    self._start_track(incoming)
                self.position = 0
                return
            outgoing, out_at = previous.incoming, previous.done
        self._transition = _Transition(outgoing, out_at, incoming, max(1, length), reason)
        if incoming is not None:
            self._start_track(incoming)

    def _start(self, index: int) -> None:
        self.current = index
        self.position = 0
        self._start_track(self.playlist[index])

    def _start_track(self, track: Track) -> None:
        self._waiting, self._fade_out_end, self._fade_in = None, None, 0
        self._events.append(("playback_start", {"track_id": track.track_id, **track.info}))

    def _end(self, track: Track, reason: str) -> None:
        self._events.append(("playback_end", {"track_id": track.track_id, "reason": reason}))

    def _playing_at(self) -> int:
        t = self._transition
        if t is not None:
            return t.done if t.incoming is not None else t.out_at + t.done
        return self.position

    def _following(self) -> int | None:
        if self.current is None or not self.playlist:
            return None
        following = self.current + 1
        if following < len(self.playlist):
            return following
        return 0 if self.loop else None

    def _fade_room(self, track: Track, following: Track) -> int:
        """A crossfade takes at most half of either track (very short tracks get a short one)."""
        return min(track.frames, following.frames) // 2

    @staticmethod
    def _frames(seconds: float) -> int:
        return int(round(seconds * RATE))


def _take(audio: np.ndarray, start: int, n: int) -> np.ndarray:
    """``n`` frames from ``start``, zero past the end."""
    piece = audio[start : start + n]
    if len(piece) < n:
        piece = np.concatenate([piece, np.zeros((n - len(piece), CHANNELS), dtype=np.float32)])
    return piece
