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


@dataclass
class AudioStreamer:
    decode: Callable[[np.ndarray], np.ndarray]
    hop: int
    on_chunk: ChunkCallback
    chunk_frames: int = 100  # 2 s
    context_frames: int = 50  # decoded before the chunk and dropped: warms the LSTM up
    lookahead_frames: int = 5  # decoded after the chunk and dropped: the convolutions' right context
    emitted_frames: int = field(default=0, init=False)

    def feed(self, frames: int, codes: Callable[[], np.ndarray]) -> None:
        """``frames`` of the track are finished; ``codes()`` returns them ``[codebooks, frames]`` (only called
        when a chunk is due, so the per-step cost is a comparison)."""
        if frames - self.emitted_frames < self.chunk_frames + self.lookahead_frames:
            return
        finished = codes()
        while finished.shape[1] - self.emitted_frames >= self.chunk_frames + self.lookahead_frames:
            self._emit(finished, self.emitted_frames + self.chunk_frames)

    def finish(self, audio: np.ndarray) -> None:
        """The rest of the track, from the final one-shot decode."""
        start = self.emitted_frames * self.hop
        if start < len(audio):
            self.on_chunk(audio[start:], start)
        self.emitted_frames = len(audio) // self.hop

    def _emit(self, codes: np.ndarray, end: int) -> None:
        start = self.emitted_frames
        lo = max(0, start - self.context_frames)
        hi = min(codes.shape[1], end + self.lookahead_frames)
        audio = self.decode(codes[:, lo:hi])
        self.on_chunk(audio[(start - lo) * self.hop : (end - lo) * self.hop], start * self.hop)
        self.emitted_frames = end
