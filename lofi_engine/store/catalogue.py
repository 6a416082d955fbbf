"""Which files make each model variant, what they weigh, and where they live on this machine.

Standard library only: the editor's host imports this to answer requests before the engine has started.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from lofi_engine.shared.errors import MODEL_NOT_FOUND, LofiError
from lofi_engine.shared.settings import EngineConfig
from lofi_engine.store import musicgen_files as files
from lofi_engine.store.ace_step_manifest import Manifest

HUB_REPO = "gabotechs/music_gen"
HUB_REVISION = "main"
LICENSE = "CC BY-NC 4.0 (non-commercial use only)"
"""The licence of MusicGen's weights; the user sees it before agreeing to the download."""


@dataclass(frozen=True)
class Variant:
    files: dict[str, str]
    """The engine's file name → the file's path in the Hub repo."""
    version: str
    """What enters every track id made with it."""
    download_bytes: int
    """As published, known without the network (for the consent question): exact for small (the pinned record of
    its files, generation_config.json ≈ 330 B), approximate for the others (checked against the Hub's metadata once
    the user agreed)."""


_SHARED = {files.CONFIG: "small/config.json", files.GENERATION_CONFIG: "small/generation_config.json", files.TOKENIZER: "small/tokenizer.json"}
VARIANTS: dict[str, Variant] = {
    "small": Variant(
        {
            **_SHARED,
            files.TEXT_ENCODER: "small_fp32/text_encoder.onnx",
            files.DECODER_MERGED: "small_fp32/decoder_model_merged.onnx",
            files.AUDIO_DECODER: "small_fp32/encodec_decode.onnx",
        },
        "musicgen-small-fp32-v1",
        2_251_406_998,
    ),
    "small-int8": Variant(
        {
            **_SHARED,
            files.TEXT_ENCODER: "small_fp32/text_encoder.onnx",
            files.DECODER_MERGED: "small_i8/decoder_model_merged.onnx",
            files.AUDIO_DECODER: "small_fp32/encodec_decode.onnx",
        },
        "musicgen-small-int8-v1",
        990_000_000,
    ),
    "small-fp16": Variant(
        {
            **_SHARED,
            files.TEXT_ENCODER: "small_fp16/text_encoder.onnx",
            files.DECODER: "small_fp16/decoder_model.onnx",
            files.DECODER_WITH_PAST: "small_fp16/decoder_with_past_model.onnx",
            files.AUDIO_DECODER: "small_fp16/encodec_decode.onnx",
        },
        "musicgen-small-fp16-v1",
        1_900_000_000,
    ),
}
"""Keyed by the settings' variant names (``shared.settings.VARIANTS``, the vocabulary; a test keeps them equal)."""


def variant_dir(config: EngineConfig) -> Path:
    """Where a downloaded variant is assembled: links named as the engine expects, into huggingface_hub's cache."""
    return config.cache_dir / "models" / config.variant


def is_available(config: EngineConfig) -> bool:
    if config.model_dir is not None:
        return True
    path = variant_dir(config)
    return all((path / name).is_file() for name in VARIANTS[config.variant].files)


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


def download_question(config: EngineConfig) -> dict:
    """What the user is asked before the variant is downloaded (no network needed): `consent_required`'s fields."""
    variant = VARIANTS[config.variant]
    return {"variant": config.variant, "size_bytes": variant.download_bytes, "files": sorted(variant.files), "license": LICENSE}


def model_version(config: EngineConfig, backend: str = "musicgen") -> str:
    """The version that enters every track id: the variant's, or a fingerprint of a user-supplied directory.

    For ACE-Step: the export's manifest names it (MODEL_NOT_FOUND, saying how to export, when there is none).
    """
    if backend == "ace-step":
        return Manifest.read(config.ace_step_dir).model_version(config.ace_step_variant)
    if config.model_dir is None:
        return VARIANTS[config.variant].version
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
