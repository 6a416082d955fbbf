"""The audio of a piece decoded as it is composed, a few seconds at a time: the chunks are the track.

EnCodec's decoder looks a little ahead (non-causal convolutions) and carries state (LSTM), so each stretch is
decoded with :data:`DECODE_CONTEXT` frames before it and :data:`LOOKAHEAD` after it, and only its middle is kept:
the stretches join into the one-call decode of all the codes (within float rounding), so every sample is decoded
once and what a player plays while the piece is composed is the finished track, sample for sample. The radio's
windows join the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

ChunkCallback = Callable[[np.ndarray, int], None]
"""``on_chunk(samples, first_sample)``: the next stretch of audio and where it starts in the track."""
CHUNK_FRAMES = 100
"""A chunk: 2 s of audio."""
DECODE_CONTEXT = 50
"""Frames decoded before a stretch and dropped (1 s: the LSTM's state converges well within it)."""
LOOKAHEAD = 10
"""Frames decoded after a stretch and dropped (the convolutions look ≈ 8 frames ahead)."""


def chunk_schedule(finished: list[int]) -> list[int]:
    """How many chunk decodes :meth:`AudioStreamer.feed` runs after each step, given the frames finished by then."""
    emitted, due = 0, []
    for frames in finished:
        count = max(0, (frames - emitted - LOOKAHEAD) // CHUNK_FRAMES)
        emitted += count * CHUNK_FRAMES
        due.append(count)
    return due


def tail_frames(total: int, start: int = 0) -> int:
    """Frames the last decode of a ``total``-frame piece runs on (the rest after the chunks, with its context),
    its chunks streamed from frame ``start`` (the frames before it are audio being continued)."""
    emitted = start + max(0, (total - start - LOOKAHEAD) // CHUNK_FRAMES) * CHUNK_FRAMES
    return total - emitted + min(DECODE_CONTEXT, emitted)


@dataclass
class AudioStreamer:
    decode: Callable[[np.ndarray], np.ndarray]
    hop: int
    on_chunk: ChunkCallback
    emitted_frames: int = 0
    """Frames whose audio went out (from the start: the frames of audio being continued, whose own audio is given)."""

    def feed(self, frames: int, codes: Callable[[], np.ndarray]) -> None:
        """``frames`` of the track are finished; ``codes()`` returns them ``[codebooks, frames]`` (only called
        when a chunk is due, so the per-step cost is a comparison)."""
        if frames - self.emitted_frames < CHUNK_FRAMES + LOOKAHEAD:
            return
        finished = codes()
        while finished.shape[1] - self.emitted_frames >= CHUNK_FRAMES + LOOKAHEAD:
            self._emit(finished, self.emitted_frames + CHUNK_FRAMES)

    def finish(self, codes: np.ndarray) -> None:
        """The rest of the track: every frame of ``codes`` after the chunks (the track's end has no lookahead)."""
        if codes.shape[1] > self.emitted_frames:
            self._emit(codes, codes.shape[1])

    def _emit(self, codes: np.ndarray, end: int) -> None:
        start = self.emitted_frames
        lo = max(0, start - DECODE_CONTEXT)
        hi = min(codes.shape[1], end + LOOKAHEAD)
        audio = self.decode(codes[:, lo:hi])
        self.on_chunk(audio[(start - lo) * self.hop : (end - lo) * self.hop], start * self.hop)
        self.emitted_frames = end
