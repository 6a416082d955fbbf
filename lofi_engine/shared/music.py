"""Musical controls on a request: tempo, key and time signature, checked once, shown to each model its own way.

MusicGen was trained on text descriptions, so it reads them as words after the prompt ("80 bpm, C minor, 3/4
time"); ACE-Step 1.5 is conditioned on them in its prompt's metadata lines (``- bpm: 80``, ``- keyscale: C minor``,
``- timesignature: 3``), where an unset one stays ``N/A``.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from lofi_engine.shared.errors import INVALID_PARAMS, LofiError

BPM_RANGE = (30, 300)
TIME_SIGNATURES = (2, 3, 4, 6)
"""Beats in a bar, as ACE-Step takes them: 2/4, 3/4, 4/4 and 6/8."""
MUSIC_PARAMS = ("bpm", "key", "time_signature")
_KEY = re.compile(r"^\s*([A-Ga-g])\s*([#♯b♭]?)\s*(major|minor|maj|min)\s*$", re.IGNORECASE)
_METER_WORDS = {2: "2/4", 3: "3/4", 4: "4/4", 6: "6/8"}


@dataclass(frozen=True)
class MusicalControls:
    bpm: int | None = None
    key: str | None = None
    """Normalised: "C minor", "F# major", "Bb minor"."""
    time_signature: int | None = None

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> "MusicalControls":
        """The controls among ``values`` (absent or None: unset); INVALID_PARAMS naming the range otherwise."""
        return cls(_bpm(values.get("bpm")), _key(values.get("key")), _time_signature(values.get("time_signature")))

    def given(self) -> dict[str, Any]:
        """The controls that are set, by their parameter names (what the track's metadata records)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def words(self) -> str:
        """How MusicGen reads them: "80 bpm, C minor, 3/4 time" (empty when none is set)."""
        parts = []
        if self.bpm is not None:
            parts.append(f"{self.bpm} bpm")
        if self.key is not None:
            parts.append(self.key)
        if self.time_signature is not None:
            parts.append(f"{_METER_WORDS[self.time_signature]} time")
        return ", ".join(parts)

    def metas(self) -> dict[str, str]:
        """ACE-Step's metadata lines, by their names there ("N/A" for an unset one)."""
        return {
            "bpm": "N/A" if self.bpm is None else str(self.bpm),
            "timesignature": "N/A" if self.time_signature is None else str(self.time_signature),
            "keyscale": "N/A" if self.key is None else self.key,
        }


def _bpm(bpm: object) -> int | None:
    if bpm is None:
        return None
    lo, hi = BPM_RANGE
    whole = isinstance(bpm, numbers.Integral) or (isinstance(bpm, float) and bpm.is_integer())
    if isinstance(bpm, bool) or not whole or not lo <= bpm <= hi:  # type: ignore[operator]
        raise LofiError(INVALID_PARAMS, f"bpm must be a whole number from {lo} to {hi}, not {bpm!r}")
    return int(bpm)  # type: ignore[arg-type]


def _key(key: object) -> str | None:
    if key is None:
        return None
    found = _KEY.match(key) if isinstance(key, str) else None
    if found is None:
        raise LofiError(INVALID_PARAMS, f'key must be a note A to G, with # or b if sharp or flat, then major or minor (e.g. "C minor", "F# major"), not {key!r}')
    note, accidental, scale = found.groups()
    accidental = {"♯": "#", "♭": "b"}.get(accidental, accidental)
    return f"{note.upper()}{accidental} {'major' if scale.lower().startswith('maj') else 'minor'}"


def _time_signature(beats: object) -> int | None:
    if beats is None:
        return None
    if isinstance(beats, bool) or not isinstance(beats, (numbers.Integral, float)) or beats not in TIME_SIGNATURES:
        raise LofiError(INVALID_PARAMS, f"time_signature must be 2, 3, 4 or 6 (beats in a bar: 2/4, 3/4, 4/4, 6/8), not {beats!r}")
    return int(beats)
