"""Playable audio before the whole track is generated: EnCodec decodes of finished frames, a few seconds at a time.

EnCodec's decoder looks a little ahead (non-causal convolutions) and carries state (LSTM), so each chunk is
decoded with frames of context on both sides and only its middle is kept: the chunks join within 1e-4 of a
one-shot decode except at the joins themselves. The finished track is always the one-shot decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

ChunkCallback = Callable[[np.ndarray, int], None]
"""``on_chunk(samples, first_sample)``: the next stretch of audio and where it starts in the track."""
CHUNK_FRAMES = 100  # 2 s
CONTEXT_FRAMES = 50  # decoded before the chunk and dropped: warms the LSTM up
LOOKAHEAD_FRAMES = 5  # decoded after the chunk and dropped: the convolutions' right context


def chunk_schedule(finished: list[int]) -> list[int]:
    """How many chunk decodes :meth:`AudioStreamer.feed` runs after each step, given the frames finished by then."""
    emitted, due = 0, []
    for frames in finished:
        count = max(0, (frames - emitted - LOOKAHEAD_FRAMES) // CHUNK_FRAMES)
        emitted += count * CHUNK_FRAMES
        due.append(count)
    return due


@dataclass
class AudioStreamer:
    decode: Callable[[np.ndarray], np.ndarray]
    hop: int
    on_chunk: ChunkCallback
    emitted_frames: int = field(default=0, init=False)

    def feed(self, frames: int, codes: Callable[[], np.ndarray]) -> None:
        """``frames`` of the track are finished; ``codes()`` returns them ``[codebooks, frames]`` (only called
        when a chunk is due, so the per-step cost is a comparison)."""
        if frames - self.emitted_frames < CHUNK_FRAMES + LOOKAHEAD_FRAMES:
            return
        finished = codes()
        while finished.shape[1] - self.emitted_frames >= CHUNK_FRAMES + LOOKAHEAD_FRAMES:
            self._emit(finished, self.emitted_frames + CHUNK_FRAMES)

    def finish(self, audio: np.ndarray) -> None:
        """The rest of the track, from the final one-shot decode."""
        start = self.emitted_frames * self.hop
        if start < len(audio):
            self.on_chunk(audio[start:], start)
        self.emitted_frames = len(audio) // self.hop

    def _emit(self, codes: np.ndarray, end: int) -> None:
        start = self.emitted_frames
        lo = max(0, start - CONTEXT_FRAMES)
        hi = min(codes.shape[1], end + LOOKAHEAD_FRAMES)
        audio = self.decode(codes[:, lo:hi])
        self.on_chunk(audio[(start - lo) * self.hop : (end - lo) * self.hop], start * self.hop)
        self.emitted_frames = end
