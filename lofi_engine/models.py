"""Where a variant's model files are on this machine."""

from __future__ import annotations

from pathlib import Path

from .config import EngineConfig
from .errors import MODEL_NOT_FOUND, LofiError


def variant_dir(config: EngineConfig) -> Path:
    """The directory the engine assembles a downloaded variant in (links into huggingface_hub's cache)."""
    return config.cache_dir / "models" / config.variant


def locate_model(config: EngineConfig) -> Path:
    """``model_dir`` when given, else the downloaded variant; MODEL_NOT_FOUND says how to get it."""
    if config.model_dir is not None:
        return config.model_dir
    path = variant_dir(config)
    if not path.is_dir():
        raise LofiError(
            MODEL_NOT_FOUND,
            f"the {config.variant} model is not downloaded (looked in {path}); "
            f"run `lofi download --variant {config.variant}` or pass --model-dir",
        )
    return path
