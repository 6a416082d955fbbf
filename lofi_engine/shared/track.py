"""The metadata a finished track carries (the spec's `generation_complete`); its id comes from the request."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lofi_engine.shared.music import MusicalControls

if TYPE_CHECKING:
    import numpy as np


class Finished(Protocol):
    """What both backends' results carry."""

    audio: np.ndarray
    sample_rate: int
    prompt: str
    seed: int
    duration_sec: float
    generation_time_sec: float
    model_version: str
    backend: str


def track_metadata(generation: Finished, track_id: str, path: Path, music: MusicalControls | None = None) -> dict:
    """Every field of the spec's `generation_complete` notification, the backend, and the musical controls asked
    for (bpm, key, time_signature)."""
    return {
        "track_id": track_id,
        "path": str(path),
        "duration_sec": round(len(generation.audio) / generation.sample_rate, 3),
        "sample_rate": generation.sample_rate,
        "prompt": generation.prompt,
        "seed": generation.seed,
        "generation_time_sec": round(generation.generation_time_sec, 3),
        "model_version": generation.model_version,
        "backend": generation.backend,
        "channels": 1 if generation.audio.ndim == 1 else generation.audio.shape[1],
        **(music.given() if music is not None else {}),
    }
