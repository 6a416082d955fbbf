"""A generation request, parsed once: validation, defaults, the seed and the track id (FR-015, FR-023).

Every way in (the CLI, JSON-RPC, the editor's remote plugin, the library's ``generate``) hands its parameters to
:meth:`GenerateRequest.parse`; past it, nothing checks or fills them again.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import secrets
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from lofi_engine.shared.errors import (
    INVALID_DURATION,
    INVALID_PARAMS,
    INVALID_PROMPT,
    LofiError,
)
from lofi_engine.shared.music import MUSIC_PARAMS, MusicalControls
from lofi_engine.shared.settings import (
    BACKENDS,
    DEFAULT_DURATION_SEC,
    DURATION_LIMITS,
    PRIORITIES,
)

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 500
"""Characters after NFKC normalisation (the tokenizer's own first step, which can turn one character into up to
18). Measured on the T5 tokenizer's form: at most one token a normalised character plus two, so 500 stays inside
the text encoder's 512-token window; a longer prompt would cost time and memory growing with its square."""
MAX_ACE_STEPS = 100
SAMPLING_PARAMS = ("top_k", "temperature", "guidance_scale")
"""MusicGen's sampling; ACE-Step samples by diffusion and takes ``steps`` instead."""
PARAMS = ("prompt", "duration_sec", "seed", "priority", "backend", *SAMPLING_PARAMS, "steps", *MUSIC_PARAMS, "continue_from", "play")


@dataclass(frozen=True)
class SamplingOptions:
    """How tokens (MusicGen) or latents (ACE-Step) are drawn; None means the model's own default."""

    top_k: int | None = None
    temperature: float | None = None
    guidance_scale: float | None = None
    steps: int | None = None

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    duration_sec: float
    seed: int
    backend: str
    priority: str = "normal"
    options: SamplingOptions = field(default_factory=SamplingOptions)
    music: MusicalControls = field(default_factory=MusicalControls)
    """Tempo, key and time signature, when asked for (part of the track id)."""
    continue_from: str | None = None
    """Audio to continue (MusicGen): a file's path or a cached track's id (the audio's digest is part of the id)."""
    play: bool = False
    """Play it as it is composed (the service's player; not part of the track id)."""

    @classmethod
    def parse(cls, params: Mapping[str, Any], default_backend: str = "musicgen") -> "GenerateRequest":
        """Checked parameters with defaults filled and the seed drawn; LofiError with the spec's code otherwise."""
        if not isinstance(params, Mapping):
            raise LofiError(INVALID_PARAMS, "params must be an object")
        unknown = sorted(str(k) for k in params if k not in PARAMS)
        if unknown:
            raise LofiError(INVALID_PARAMS, f"unknown parameter {', '.join(unknown)} for generate; known: {', '.join(PARAMS)}")
        values = {k: v for k, v in params.items() if v is not None or k not in ("seed", *SAMPLING_PARAMS, "steps")}
        backend = _backend(values.get("backend", default_backend))
        seed = _seed(values.get("seed"))
        return cls(
            prompt=_prompt(values.get("prompt")),
            duration_sec=_duration(values.get("duration_sec", DEFAULT_DURATION_SEC), backend),
            seed=secrets.randbelow(MAX_SEED + 1) if seed is None else seed,
            backend=backend,
            priority=_priority(values.get("priority", "normal")),
            options=_options(values, backend),
            music=MusicalControls.parse(values),
            continue_from=_continue_from(values.get("continue_from"), backend),
            play=_play(values.get("play", False)),
        )

    def track_id(self, model_version: str, continues: str | None = None) -> str:
        """Short stable hash of prompt + seed + duration + model version + backend (+ sampling options and musical
        controls, when any are given, + ``continues``: a digest of the audio continued): the same request gives the
        same id."""
        key: list[Any] = [self.prompt, self.seed, self.duration_sec, model_version, self.backend]
        if continues is not None:
            key.append({"continues": continues})
        if self.options.given():
            key.append(self.options.given())
        if self.music.given():
            key.append({"music": self.music.given()})
        text = json.dumps(key, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """The fields a job shows in the queue and in `generation_start`."""
        continues = {"continue_from": self.continue_from} if self.continue_from is not None else {}
        return {"prompt": self.prompt, "duration_sec": self.duration_sec, "seed": self.seed, "backend": self.backend, **self.music.given(), **continues}


def _continue_from(source: object, backend: str) -> str | None:
    if source is None:
        return None
    if not isinstance(source, str) or not source.strip() or "\0" in source:
        raise LofiError(INVALID_PARAMS, f"continue_from must be an audio file's path or a track id, not {source!r}")
    if backend != "musicgen":
        raise LofiError(INVALID_PARAMS, "continue_from works with musicgen (ACE-Step continues no audio here)")
    return source


def file_digest(path: str | os.PathLike) -> str:
    """What identifies audio to continue in a track id: a hash of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _play(play: object) -> bool:
    if not isinstance(play, bool):
        raise LofiError(INVALID_PARAMS, f"play must be true or false, not {play!r}")
    return play


def _backend(backend: object) -> str:
    if backend not in BACKENDS:
        raise LofiError(INVALID_PARAMS, f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    return str(backend)


def _prompt(prompt: object) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise LofiError(INVALID_PROMPT, "prompt must be a non-empty text describing the music")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise LofiError(INVALID_PROMPT, "prompt must be valid Unicode text (it holds a lone surrogate)") from None
    length = len(unicodedata.normalize("NFKC", prompt))
    if length > MAX_PROMPT_CHARS:
        raise LofiError(INVALID_PROMPT, f"prompt is too long: {length} characters, at most {MAX_PROMPT_CHARS} (the text encoder reads 512 tokens)")
    return prompt


def _duration(duration_sec: object, backend: str) -> float:
    lo, hi = DURATION_LIMITS[backend]
    if not _finite(duration_sec) or not lo <= duration_sec <= hi:  # type: ignore[operator]
        shown = duration_sec if not isinstance(duration_sec, numbers.Integral) or abs(int(duration_sec)) < 10**12 else "a huge number"
        raise LofiError(INVALID_DURATION, f"duration_sec must be a number from {lo:g} to {hi:g} seconds with {backend}, got {shown!r}")
    return float(duration_sec)  # type: ignore[arg-type]


def _seed(seed: object) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise LofiError(INVALID_PARAMS, f"seed must be an integer from 0 to {MAX_SEED}")
    return int(seed)


def _priority(priority: object) -> str:
    if priority not in PRIORITIES:
        raise LofiError(INVALID_PARAMS, f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
    return str(priority)


def _options(values: Mapping[str, Any], backend: str) -> SamplingOptions:
    wrong = [k for k in (SAMPLING_PARAMS if backend == "ace-step" else ("steps",)) if k in values]
    if wrong:
        why = "musicgen only; ACE-Step turbo samples by diffusion" if backend == "ace-step" else "ace-step only"
        raise LofiError(INVALID_PARAMS, f"{', '.join(wrong)} apply to {why}")
    top_k, temperature, guidance = values.get("top_k"), values.get("temperature"), values.get("guidance_scale")
    steps = values.get("steps")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise LofiError(INVALID_PARAMS, "top_k must be a positive integer")
    if temperature is not None and (not _finite(temperature) or temperature <= 0):
        raise LofiError(INVALID_PARAMS, "temperature must be a positive number")
    if guidance is not None and (not _finite(guidance) or guidance < 1):
        raise LofiError(INVALID_PARAMS, "guidance_scale must be a number of at least 1 (1 turns guidance off)")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= MAX_ACE_STEPS):
        raise LofiError(INVALID_PARAMS, f"steps must be an integer from 1 to {MAX_ACE_STEPS}")
    return SamplingOptions(
        top_k=None if top_k is None else int(top_k),
        temperature=None if temperature is None else float(temperature),
        guidance_scale=None if guidance is None else float(guidance),
        steps=None if steps is None else int(steps),
    )


def _finite(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False
