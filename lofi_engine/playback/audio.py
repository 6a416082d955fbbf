"""Tracks read for playback: any WAV the store holds, as float32 stereo at the mixer's rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from lofi_engine.audio.resample import resample
from lofi_engine.playback.mixer import CHANNELS, RATE
from lofi_engine.shared.errors import PLAYBACK_FAILED, LofiError

JOIN_CONTEXT = 64
"""Input samples of a track kept for the one that continues it (more than the filter's reach, and even, so they
map onto a whole number of output samples at 32 → 48 kHz)."""


def read_track(path: Path) -> tuple[np.ndarray, int]:
    """The file's samples ``[frames, 2]`` float32 (mono doubled) at its own rate, and that rate; PLAYBACK_FAILED if
    it cannot be read."""
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise LofiError(PLAYBACK_FAILED, f"cannot read {path.name}: {exc}") from None
    if audio.shape[1] == 1:
        audio = np.repeat(audio, CHANNELS, axis=1)
    return np.ascontiguousarray(audio[:, :CHANNELS], dtype=np.float32), rate


def to_mixer_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate == RATE:
        return audio
    return np.stack([resample(audio[:, c], rate, RATE) for c in range(CHANNELS)], axis=1)


def continue_resampled(previous_tail: np.ndarray, audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """``audio`` that continues a stream whose last input samples were ``previous_tail``, at the mixer's rate,
    resampled as if in one piece with it: returns the corrected end of the previous track (its last
    ``len(previous_tail)`` samples' worth, which lacked what follows when they were resampled) and the new audio."""
    joined = to_mixer_rate(np.concatenate([previous_tail, audio]), rate)
    split = len(previous_tail) * RATE // rate
    return joined[split // 2 : split], joined[split:]
