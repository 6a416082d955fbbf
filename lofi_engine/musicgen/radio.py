"""One endless MusicGen piece for the radio: window after window, each continuing the last seconds of codes.

The text condition may change between windows (steering): the codes go on, only what they are asked to become
changes. Each window's new audio is decoded with :data:`DECODE_CONTEXT` frames before it and :data:`LOOKAHEAD`
after it, so the segments join into exactly the one-call decode of all the codes (EnCodec's LSTM warms up on the
context, its non-causal convolutions see the lookahead); the last :data:`LOOKAHEAD` frames wait for the next
window. Memory stays bounded: only the codes the next window and the next decode need are kept.

A stream may start from audio (the user's own music): its codes come before the stream's first frame, the first
window continues them and the first decode reads them as its context, so the stream's audio is only new music,
going on from that audio.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from lofi_engine.musicgen.costs import DecoderEta
from lofi_engine.musicgen.model import MusicGen
from lofi_engine.musicgen.sampling import TokenSampler
from lofi_engine.musicgen.streaming import CHUNK_FRAMES, DECODE_CONTEXT, LOOKAHEAD, AudioStreamer, ChunkCallback, chunk_schedule
from lofi_engine.musicgen.text import described, encode_prompt
from lofi_engine.musicgen.windows import Window, finished_frames
from lofi_engine.shared.errors import INVALID_PARAMS, LofiError
from lofi_engine.shared.request import GenerateRequest

FIRST_WINDOW_SEC = 10.0
"""The stream's first window is at most this long: it is heard while composed, and a shorter one starts sooner
(playing may start once what is left to compose is shorter than the window); the windows after it are full."""
REWINDABLE = 4
"""Windows a stream keeps the codes to go back over (the radio composes 2 ahead of what plays)."""


@dataclass(frozen=True)
class Segment:
    audio: np.ndarray
    """float32 mono samples."""
    first_frame: int
    """Where it starts in the stream, in codec frames."""
    codes: np.ndarray
    """The window's new codes ``[codebooks, frames]`` (frames of the stream from ``codes_from``)."""
    codes_from: int
    prompt: str


@dataclass
class ContinuousStream:
    model: MusicGen
    request: GenerateRequest
    """Prompt, seed and sampling options of the stream (its duration is not used: the stream has none)."""
    window_sec: float
    context_sec: float
    given: np.ndarray | None = None
    """Codes ``[codebooks, frames]`` of audio the stream continues (:meth:`MusicGen.prompt_codes`), or None."""
    _sampler: TokenSampler = field(init=False)
    _condition: tuple[np.ndarray, np.ndarray] = field(init=False)
    prompt: str = field(init=False)
    _tail: np.ndarray = field(init=False)  # the last codes of the stream
    _tail_from: int = field(init=False, default=0)  # the stream frame where _tail starts (negative: audio continued)
    frames: int = field(init=False, default=0)  # codes made so far
    decoded: int = field(init=False, default=0)  # frames whose audio went out
    _marks: list[tuple[int, int]] = field(init=False, default_factory=list)  # (frames, decoded) after each window

    def __post_init__(self) -> None:
        rate = self.model.settings.frame_rate
        self.window_frames = round(self.window_sec * rate)
        self.context_frames = round(self.context_sec * rate)
        if not 0 < self.context_frames < self.window_frames:
            raise LofiError(INVALID_PARAMS, f"the radio's context ({self.context_sec:g} s) must be shorter than its window ({self.window_sec:g} s)")
        self._sampler = TokenSampler.for_request(self.request, self.model.settings)
        self._tail = np.zeros((self.model.settings.num_codebooks, 0), dtype=np.int64)
        if self.given is not None:
            self._tail = self.given[:, max(0, self.given.shape[1] - max(self.context_frames, DECODE_CONTEXT)) :]
            self._tail_from = -self._tail.shape[1]
        self.steer(self.request.prompt)

    def steer(self, prompt: str) -> None:
        """The text condition of the windows from the next one on."""
        self.prompt = prompt
        self._condition = encode_prompt(self.model.tokenizer, self.model.text_encoder, described(prompt, self.request.music), self._sampler.uses_guidance)

    @property
    def windows(self) -> int:
        """Windows composed so far."""
        return len(self._marks)

    def rewind(self, windows: int) -> None:
        """Forget the windows after the first ``windows`` (their audio was not heard: a steer replaces it); the
        next window continues the stream from there, joining it exactly. At most :data:`REWINDABLE` windows back."""
        if not self.windows - REWINDABLE <= windows <= self.windows:
            raise LofiError(INVALID_PARAMS, f"the radio can go back {REWINDABLE} windows, not from {self.windows} to {windows}")
        if windows == self.windows:
            return
        self.frames, self.decoded = self._marks[windows - 1] if windows else (0, 0)
        self._tail = self._tail[:, : max(0, self.frames - self._tail_from)]
        self._tail_from = min(self._tail_from, self.frames)
        del self._marks[windows:]

    def steps_per_window(self) -> int:
        return self.new_frames() + self.model.settings.num_codebooks - 1

    def new_frames(self) -> int:
        """Frames the next window adds: the first window's (at most :data:`FIRST_WINDOW_SEC`), else the window's
        length less its context."""
        if self.frames == 0:
            return min(self.window_frames, round(FIRST_WINDOW_SEC * self.model.settings.frame_rate))
        return self.window_frames - self.context_frames

    def streams_next_window(self) -> bool:
        """Whether the next window's audio can be heard while it is composed: the stream's first window (it has no
        context); later windows are composed ahead of what plays and come whole."""
        return self.frames == 0

    def progress_model(self, chunks: bool) -> DecoderEta:
        """The next window's units of work and their ETA at this machine's prices (``chunks``: streamed as it is
        composed)."""
        _, window = self._plan()
        streamed_now = chunks and self.streams_next_window()
        schedule = chunk_schedule(finished_frames([window], self.model.settings.num_codebooks)) if streamed_now else None
        streamed = sum(schedule or []) * CHUNK_FRAMES
        end = self.frames + window.new_frames - LOOKAHEAD
        start = self.decoded + streamed
        return DecoderEta([window], end - start + LOOKAHEAD + min(DECODE_CONTEXT, start - self._tail_from), self.model.costs, schedule)

    def _plan(self) -> tuple[np.ndarray, Window]:
        """The next window: the context codes it continues and its shape."""
        context = self._tail[:, max(0, self._tail.shape[1] - self.context_frames) :]
        return context, Window(context.shape[1], self.new_frames(), self.steps_per_window())

    def next_window(
        self,
        on_step: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_chunk: ChunkCallback | None = None,
    ) -> Segment:
        """Compose the next window and return the audio that is now final (up to :data:`LOOKAHEAD` frames short).
        ``on_chunk(samples, first_sample)`` hears that audio 2 s at a time while it is composed, and the rest
        at its end, when the window :meth:`streams_next_window`; the segment's audio is those chunks, joined exactly."""
        context, window = self._plan()
        given = context.shape[1]  # the window's own frame 0 is the stream's frame self.frames - given
        hop = self.model.settings.hop_length
        parts: list[np.ndarray] = []
        chunk_sec: list[float] = []
        streamer = None
        if on_chunk is not None and self.streams_next_window():
            def timed_decode(codes: np.ndarray) -> np.ndarray:
                started_decode = time.perf_counter()
                audio = self.model.decode_audio(codes)
                chunk_sec.append(time.perf_counter() - started_decode)
                return audio

            def kept(audio: np.ndarray, first_sample: int) -> None:
                parts.append(audio)
                on_chunk(audio, first_sample - given * hop)

            streamer = AudioStreamer(timed_decode, hop, kept, emitted_frames=given)
            finished = [given + f for f in finished_frames([window], self.model.settings.num_codebooks)]
        composition = self.model.compose([window], *self._condition, self._sampler, should_stop, context=context)
        for step in composition:
            if on_step is not None:
                on_step(step.done, step.total)
            if streamer is not None:
                streamer.feed(finished[step.done - 1], step.codes_so_far)
        fresh = composition.codes[:, context.shape[1] :]
        codes_from = self.frames
        self._tail = np.concatenate([self._tail, fresh], axis=1)
        self.frames += fresh.shape[1]
        first_frame = self.decoded
        if streamer is not None:
            self.decoded = streamer.emitted_frames - given
        rest_from = self.decoded * hop
        decode_started = time.perf_counter()
        audio, decoded_frames = self._decode(self.frames - LOOKAHEAD)
        if on_chunk is not None and streamer is not None and len(audio):  # its last chunk: the window is all heard
            on_chunk(audio, rest_from)
        self._marks.append((self.frames, self.decoded))
        # the stream's windows teach the ETA's prices too
        self.model.learn_costs(
            [window], composition.unit_sec, decoded_frames, time.perf_counter() - decode_started, sum(chunk_sec) / len(chunk_sec) if chunk_sec else None
        )
        return Segment(np.concatenate([*parts, audio]), first_frame, fresh, codes_from, self.prompt)

    def _decode(self, until: int) -> tuple[np.ndarray, int]:
        """The audio of frames [decoded, until), decoded with context on both sides, and how many frames that
        decode ran on; then forget what no later window or decode needs."""
        hop = self.model.settings.hop_length
        start = self.decoded
        lo = max(self._tail_from, start - DECODE_CONTEXT)  # the audio continued, if any, is context too
        hi = min(self.frames, until + LOOKAHEAD)
        window = self._tail[:, lo - self._tail_from : hi - self._tail_from]
        audio = self.model.decode_audio(window)[(start - lo) * hop : (until - lo) * hop]
        self.decoded = until
        keep_from = min(self.frames - self.context_frames, until - DECODE_CONTEXT)
        # what a rewind to the fewest windows it may go back to needs (this window's mark comes after this decode)
        oldest = max(0, len(self._marks) + 1 - REWINDABLE)
        frames, decoded = self._marks[oldest - 1] if oldest else (0, 0)
        keep_from = min(keep_from, frames - self.context_frames, decoded - DECODE_CONTEXT)
        if keep_from > self._tail_from:
            self._tail = self._tail[:, keep_from - self._tail_from :]
            self._tail_from = keep_from
        return audio, hi - lo
