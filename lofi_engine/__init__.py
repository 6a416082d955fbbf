"""lofi.nvim's music engine: MusicGen and ACE-Step on ONNX Runtime.

The client side (config, queue, cache, :class:`EngineClient`) needs only the standard library, so the editor's
python3 host can import it; the model side (numpy, onnxruntime) loads on first use of :class:`MusicGen` or
:class:`AceStep`.
"""

import os
from typing import Any

from lofi_engine.shared.errors import LofiError

# ONNX Runtime (1.32 here, on Linux) starts its telemetry as it is imported: a device id and an event store written to
# ~/.cache/Microsoft/DeveloperTools/.onnxruntime, for upload. Nothing of the user's goes anywhere unasked, and
# nothing is written outside lofi's own folders: off before any part of the engine imports it (a user who sets the
# variable keeps their choice).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = ["AceGeneration", "AceStep", "Generation", "LofiError", "MusicGen"]


def __getattr__(name: str) -> Any:
    if name in ("Generation", "MusicGen"):
        from lofi_engine.musicgen import model as musicgen

        return getattr(musicgen, name)
    if name in ("AceGeneration", "AceStep"):
        from lofi_engine.ace_step import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'lofi_engine' has no attribute {name!r}")
