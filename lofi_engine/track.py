"""Track identity (FR-015) and the metadata a finished track carries (the spec's `generation_complete`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .musicgen import Generation


def track_id(prompt: str, seed: int, duration_sec: float, model_version: str) -> str:
    """Short stable hash of prompt + seed + duration + model version: the same request gives the same id."""
    key = json.dumps([prompt, int(seed), float(duration_sec), model_version], ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def track_metadata(generation: "Generation", path: Path) -> dict:
    """Every field of the spec's `generation_complete` notification."""
    return {
        "track_id": track_id(generation.prompt, generation.seed, generation.duration_sec, generation.model_version),
        "path": str(path),
        "duration_sec": round(len(generation.audio) / generation.sample_rate, 3),
        "sample_rate": generation.sample_rate,
        "prompt": generation.prompt,
        "seed": generation.seed,
        "generation_time_sec": round(generation.generation_time_sec, 3),
        "model_version": generation.model_version,
    }
