"""Checks on a generation request, run before any model work."""

from __future__ import annotations

import math
import numbers

from lofi_engine.shared.errors import INVALID_DURATION, INVALID_PARAMS, INVALID_PROMPT, LofiError

BACKENDS = ("musicgen", "ace-step")
DURATION_LIMITS = {"musicgen": (5.0, 120.0), "ace-step": (10.0, 240.0)}
"""Seconds of audio each backend makes: MusicGen stitches 30 s windows, ACE-Step composes the whole piece at once."""
MAX_SEED = 2**32 - 1


def check_backend(backend: object) -> str:
    if backend not in BACKENDS:
        raise LofiError(INVALID_PARAMS, f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    return str(backend)


def check_prompt(prompt: object) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise LofiError(INVALID_PROMPT, "prompt must be a non-empty text describing the music")
    return prompt


def check_duration(duration_sec: object, backend: str = "musicgen") -> float:
    lo, hi = DURATION_LIMITS[backend]
    if (
        isinstance(duration_sec, bool)
        or not isinstance(duration_sec, numbers.Real)
        or not math.isfinite(duration_sec)
        or not lo <= duration_sec <= hi
    ):
        raise LofiError(INVALID_DURATION, f"duration_sec must be a number from {lo:g} to {hi:g} seconds with {backend}, got {duration_sec!r}")
    return float(duration_sec)


def check_seed(seed: object) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise LofiError(INVALID_PARAMS, f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    return int(seed)


def check_sampling(top_k: object, temperature: object, guidance_scale: object) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise LofiError(INVALID_PARAMS, f"top_k must be a positive integer, got {top_k!r}")
    if not _finite(temperature) or temperature <= 0:
        raise LofiError(INVALID_PARAMS, f"temperature must be a positive number, got {temperature!r}")
    if not _finite(guidance_scale) or guidance_scale < 1:
        raise LofiError(INVALID_PARAMS, f"guidance_scale must be a number of at least 1 (1 turns guidance off), got {guidance_scale!r}")


def _finite(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
