"""What the engine reads from a MusicGen model's `config.json` and `generation_config.json`, every value checked."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from lofi_engine.musicgen.delay_pattern import window_length
from lofi_engine.musicgen.windows import WINDOW_SEC
from lofi_engine.shared.errors import MODEL_LOAD_FAILED, LofiError
from lofi_engine.store import musicgen_files as files


@dataclass(frozen=True)
class ModelSettings:
    """What the engine needs from `config.json` and `generation_config.json`."""

    num_codebooks: int
    pad_token: int
    max_positions: int
    sample_rate: int
    hop_length: int
    top_k: int
    temperature: float
    guidance_scale: float
    size: str

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @classmethod
    def read(cls, model_dir: Path) -> "ModelSettings":
        """Every value checked: a missing, mistyped or nonsensical one is MODEL_LOAD_FAILED naming the file and the
        field (``LofiError.path`` is that file), never a traceback or a generation that cannot end."""
        config_path, generation_path = model_dir / files.CONFIG, model_dir / files.GENERATION_CONFIG
        config = _Fields(config_path, _read_json(config_path))
        generation = _Fields(generation_path, _read_json(generation_path))
        decoder, codec = config.section("decoder"), config.section("audio_encoder")
        num_codebooks = decoder.integer("num_codebooks", 1, 64)
        max_positions = decoder.integer("max_position_embeddings", 1, 1 << 20)
        sample_rate = codec.integer("sampling_rate", 1, 768_000)
        ratios = codec.value("upsampling_ratios")
        if not isinstance(ratios, list) or not ratios or not all(_is_int(r) and 1 <= r <= 1 << 16 for r in ratios):
            codec.fail("upsampling_ratios", "must be a non-empty list of positive integers", ratios)
        hop_length = math.prod(int(r) for r in ratios)
        if not 1 <= sample_rate / hop_length <= 1000:
            codec.fail("upsampling_ratios", f"give {sample_rate / hop_length:g} codec frames a second at sampling_rate {sample_rate} (1 to 1000 expected)", ratios)
        window = window_length(0, round(WINDOW_SEC * sample_rate / hop_length), num_codebooks)
        if window > max_positions:
            decoder.fail("max_position_embeddings", f"is too small for a {WINDOW_SEC:g} s window ({window} positions)", max_positions)
        decoder_pad = decoder.integer("pad_token_id", 0, 1 << 31, default=2048)
        return cls(
            num_codebooks=num_codebooks,
            pad_token=generation.integer("pad_token_id", 0, 1 << 31, default=decoder_pad),
            max_positions=max_positions,
            sample_rate=sample_rate,
            hop_length=hop_length,
            top_k=generation.integer("top_k", 1, 1 << 31, default=250),
            temperature=generation.number("temperature", above=0.0, default=1.0),
            guidance_scale=generation.number("guidance_scale", at_least=1.0, default=3.0),
            size=_size_name(decoder.integer("hidden_size", 1, 1 << 20), decoder.integer("num_hidden_layers", 1, 1 << 12)),
        )


class _Fields:
    """One JSON object of a model's config, read field by field; ``where`` names it in errors (``decoder.``)."""

    def __init__(self, path: Path, data: object, where: str = "") -> None:
        self.path, self.where = path, where
        if not isinstance(data, dict):
            what = f"its {where.rstrip('.')} entry" if where else "it"
            raise LofiError(MODEL_LOAD_FAILED, f"{path} is not a MusicGen config: {what} must be a JSON object, not {_shown(data)}", path=path)
        self.data = data

    def fail(self, key: str, problem: str, value: object) -> None:
        raise LofiError(MODEL_LOAD_FAILED, f"{self.path}: {self.where}{key} {problem}, not {_shown(value)}", path=self.path)

    def value(self, key: str) -> object:
        if key not in self.data:
            raise LofiError(MODEL_LOAD_FAILED, f"{self.path}: {self.where}{key} is missing; it is not a MusicGen config", path=self.path)
        return self.data[key]

    def section(self, key: str) -> "_Fields":
        return _Fields(self.path, self.value(key), f"{self.where}{key}.")

    def integer(self, key: str, lo: int, hi: int, default: int | None = None) -> int:
        value = default if default is not None and self.data.get(key) is None else self.value(key)
        if not _is_int(value) or not lo <= value <= hi:
            self.fail(key, f"must be an integer from {lo} to {hi}", value)
        return int(value)

    def number(self, key: str, default: float, above: float | None = None, at_least: float | None = None) -> float:
        value = default if self.data.get(key) is None else self.data[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (above is not None and value <= above) or (at_least is not None and value < at_least):
            bound = f"above {above:g}" if above is not None else f"of at least {at_least:g}"
            self.fail(key, f"must be a finite number {bound}", value)
        return float(value)


def _is_int(value: object) -> bool:
    """A JSON integer (also written as 32000.0), not true/false."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _shown(value: object) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list, str, int, float, bool, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_json(path: Path) -> object:
    """The parsed file; MODEL_LOAD_FAILED naming it (``LofiError.path``) when it cannot be read or is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise LofiError(MODEL_LOAD_FAILED, f"cannot read {path}: {exc}", path=path) from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _size_name(hidden: int, layers: int) -> str:
    return {(1024, 24): "small", (1536, 48): "medium", (2048, 48): "large"}.get((hidden, layers), f"custom{hidden}x{layers}")
