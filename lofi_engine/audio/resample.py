"""Sample-rate conversion: one resampler for the player (tracks to its mixer's rate) and the engine (audio to
continue, to the model's rate)."""

from __future__ import annotations

from math import gcd

import numpy as np

TAPS_PER_PHASE = 32


BLOCK = 65536
"""Output samples computed at once (bounds the index arrays to a few tens of MB)."""


def resample(signal: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Rational resampling (up by L, windowed-sinc low-pass, down by M; MusicGen's 32 kHz to 48 kHz is L=3, M=2),
    computed polyphase: each output sample sums only the input samples its filter reaches, so 44.1 kHz to 32 kHz
    (L=320, M=441) costs what 32 to 48 kHz does."""
    divisor = gcd(rate_in, rate_out)
    up, down = rate_out // divisor, rate_in // divisor
    cutoff = 0.5 / max(up, down) * 0.95  # of the upsampled rate, a little below the lower Nyquist
    half = TAPS_PER_PHASE * max(up, down) // 2
    n = np.arange(-half, half + 1)
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(len(n), 8.0) * up
    x = np.asarray(signal, dtype=np.float64)
    frames = len(x) * up // down
    reach = np.arange(2 * half // up + 1)
    out = np.empty(frames, dtype=np.float32)
    for first in range(0, frames, BLOCK):
        at = np.arange(first, min(frames, first + BLOCK), dtype=np.int64) * down  # where each output sits, upsampled
        inputs = (-((half - at) // up))[:, None] + reach  # the first input sample its filter reaches, and on
        tap = at[:, None] - inputs * up + half
        valid = (tap >= 0) & (tap <= 2 * half) & (inputs >= 0) & (inputs < len(x))
        weights = np.where(valid, taps[np.clip(tap, 0, 2 * half)], 0.0)
        out[first : first + len(at)] = (weights * x[np.clip(inputs, 0, max(len(x) - 1, 0))]).sum(axis=1)
    return out
