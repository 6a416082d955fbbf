"""Audio a piece continues: read from any file soundfile reads (or given as samples), mixed down to mono and
resampled to the model's rate; its last ``context_sec`` become the codes the decoder continues, and the whole of it
starts the track, the new music joined to it by a short crossfade into EnCodec's own rendering of its end."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lofi_engine.audio.resample import resample
from lofi_engine.shared.errors import INVALID_AUDIO, INVALID_PARAMS, LofiError

DEFAULT_CONTEXT_SEC = 10.0
MAX_CONTEXT_SEC = 30.0
MIN_SEC = 1.0
MAX_SEC = 600.0
"""Audio longer than this is refused (the track holds all of it)."""
SILENCE = 1e-4
"""A peak below this is silence: nothing to continue."""
JOIN_FRAMES = 5
"""The crossfade from the user's audio into the model's rendering of its end: 5 codec frames (0.1 s)."""


@dataclass(frozen=True)
class AudioPrompt:
    audio: np.ndarray
    """All of it, float32 mono at the model's rate: the start of the track."""
    context: np.ndarray
    """Its last ``context_sec``: what is encoded and continued."""
    name: str
    """How errors name it."""


def read_audio_prompt(source: str | Path | np.ndarray, sample_rate: int, source_rate: int | None = None,
                      context_sec: float = DEFAULT_CONTEXT_SEC) -> AudioPrompt:
    """The audio to continue from a path (any rate, any channels) or float samples (``[samples]`` or
    ``[samples, channels]`` at ``source_rate``, default the model's). INVALID_AUDIO, naming the file, for a missing,
    unreadable, silent, too short or too long one, or a path that is not a regular file."""
    if isinstance(context_sec, bool) or not isinstance(context_sec, (int, float)) or not MIN_SEC <= context_sec <= MAX_CONTEXT_SEC:
        raise LofiError(INVALID_PARAMS, f"context_sec must be a number from {MIN_SEC:g} to {MAX_CONTEXT_SEC:g} seconds, not {context_sec!r}")
    if isinstance(source, np.ndarray):
        name, samples, rate = "the audio given", source, source_rate or sample_rate
    else:
        name = str(source)
        samples, rate = _read_file(Path(source).expanduser())
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)  # mixed down, as the model is mono
    if samples.ndim != 1 or not np.isfinite(samples).all():
        raise LofiError(INVALID_AUDIO, f"{name}: not mono or multi-channel samples of finite values")
    seconds = len(samples) / rate
    if seconds < MIN_SEC:
        raise LofiError(INVALID_AUDIO, f"{name} is too short to continue: {seconds:.2f} s, at least {MIN_SEC:g} s")
    if seconds > MAX_SEC:
        raise LofiError(INVALID_AUDIO, f"{name} is too long: {seconds:.0f} s, at most {MAX_SEC:.0f} s")
    if rate != sample_rate:
        samples = resample(samples, rate, sample_rate)
    if np.abs(samples).max(initial=0.0) < SILENCE:
        raise LofiError(INVALID_AUDIO, f"{name} is silent: nothing to continue")
    return AudioPrompt(samples, samples[max(0, len(samples) - round(context_sec * sample_rate)) :], name)


def _read_file(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise LofiError(INVALID_AUDIO, f"{path}: no such file") from None
    except OSError as exc:
        raise LofiError(INVALID_AUDIO, f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise LofiError(INVALID_AUDIO, f"{path} is not a regular file")
    try:
        info = soundfile.info(str(path))
        if info.frames / info.samplerate > MAX_SEC:
            raise LofiError(INVALID_AUDIO, f"{path} is too long: {info.frames / info.samplerate:.0f} s, at most {MAX_SEC:.0f} s")
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except LofiError:
        raise
    except Exception as exc:  # soundfile's errors for what it cannot read
        raise LofiError(INVALID_AUDIO, f"{path} cannot be read as audio: {exc}") from None
    return samples, int(rate)


def join(prompt: np.ndarray, rendered_end: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The user's audio, then the new music: the last ``len(rendered_end)`` samples of ``prompt`` fade into EnCodec's
    rendering of them (which the new music continues exactly), so the seam has no click."""
    fade = len(rendered_end)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    seam = prompt[len(prompt) - fade :] * (1.0 - ramp) + rendered_end * ramp
    return np.concatenate([prompt[: len(prompt) - fade], seam.astype(np.float32), new])
