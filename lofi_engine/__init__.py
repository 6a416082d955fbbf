"""lofi.nvim's music engine: MusicGen on ONNX Runtime."""

from .errors import LofiError
from .musicgen import Generation, MusicGen

__all__ = ["Generation", "LofiError", "MusicGen"]
