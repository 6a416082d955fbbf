"""Which files make each model variant, where they live on this machine, and the user's download consent.

Standard library only: the editor's host imports this to answer requests before the engine has started.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from lofi_engine.store import musicgen_files as files
from lofi_engine.store.ace_step_manifest import Manifest
from lofi_engine.shared.settings import EngineConfig
from lofi_engine.shared.errors import MODEL_NOT_FOUND, LofiError
from lofi_engine.store.jsonfile import read_json, write_json_atomic

HUB_REPO = "gabotechs/music_gen"
HUB_REVISION = "main"
_SHARED = {files.CONFIG: "small/config.json", files.GENERATION_CONFIG: "small/generation_config.json", files.TOKENIZER: "small/tokenizer.json"}
VARIANT_FILES: dict[str, dict[str, str]] = {
    "small": {
        **_SHARED,
        files.TEXT_ENCODER: "small_fp32/text_encoder.onnx",
        files.DECODER_MERGED: "small_fp32/decoder_model_merged.onnx",
        files.AUDIO_DECODER: "small_fp32/encodec_decode.onnx",
    },
    "small-int8": {
        **_SHARED,
        files.TEXT_ENCODER: "small_fp32/text_encoder.onnx",
        files.DECODER_MERGED: "small_i8/decoder_model_merged.onnx",
        files.AUDIO_DECODER: "small_fp32/encodec_decode.onnx",
    },
    "small-fp16": {
        **_SHARED,
        files.TEXT_ENCODER: "small_fp16/text_encoder.onnx",
        files.DECODER: "small_fp16/decoder_model.onnx",
        files.DECODER_WITH_PAST: "small_fp16/decoder_with_past_model.onnx",
        files.AUDIO_DECODER: "small_fp16/encodec_decode.onnx",
    },
}
VARIANT_VERSIONS = {"small": "musicgen-small-fp32-v1", "small-int8": "musicgen-small-int8-v1", "small-fp16": "musicgen-small-fp16-v1"}


def variant_dir(config: EngineConfig) -> Path:
    """Where a downloaded variant is assembled: links named as the engine expects, into huggingface_hub's cache."""
    return config.cache_dir / "models" / config.variant


def is_available(config: EngineConfig) -> bool:
    if config.model_dir is not None:
        return True
    path = variant_dir(config)
    return all((path / name).is_file() for name in VARIANT_FILES[config.variant])


def locate_model(config: EngineConfig) -> Path:
    """``model_dir`` when given, else the downloaded variant; MODEL_NOT_FOUND says how to get it."""
    if config.model_dir is not None:
        return config.model_dir
    if not is_available(config):
        raise LofiError(
            MODEL_NOT_FOUND,
            f"the {config.variant} model is not downloaded (looked in {variant_dir(config)}); "
            f"run `lofi download --variant {config.variant}` or pass --model-dir",
        )
    return variant_dir(config)


def model_version(config: EngineConfig, backend: str = "musicgen") -> str:
    """The version that enters every track id: the variant's, or a fingerprint of a user-supplied directory.

    For ACE-Step: the export's manifest names it (MODEL_NOT_FOUND, saying how to export, when there is none).
    """
    if backend == "ace-step":
        return Manifest.read(config.ace_step_dir).model_version(config.ace_step_variant)
    if config.model_dir is None:
        return VARIANT_VERSIONS[config.variant]
    digest = hashlib.sha256()
    directory = config.model_dir
    for path in sorted(directory.glob("*")) if directory.is_dir() else []:
        if path.is_file():
            size = path.stat().st_size
            digest.update(f"{path.name}:{size}:".encode())
            with open(path, "rb") as f:
                digest.update(f.read(1 << 16))
                f.seek(max(0, size - (1 << 16)))
                digest.update(f.read())
    return f"musicgen-local-{digest.hexdigest()[:10]}-v1"


class ConsentStore:
    """The user's one-time answer to "download the model?" (FR-025), kept per variant."""

    def __init__(self, config: EngineConfig) -> None:
        self.path = config.cache_dir / "consent.json"

    def granted(self, variant: str) -> bool:
        return read_json(self.path, {}).get(variant) is True

    def record(self, variant: str, granted: bool) -> None:
        answers = read_json(self.path, {})
        answers[variant] = granted
        write_json_atomic(self.path, answers)
