"""The file names of a MusicGen model directory, as published in the HuggingFace repo `gabotechs/music_gen`."""

from __future__ import annotations

from pathlib import Path

from lofi_engine.shared.errors import INVALID_PARAMS, MODEL_NOT_FOUND, LofiError
from lofi_engine.shared.settings import DECODER_FORMS

CONFIG = "config.json"
GENERATION_CONFIG = "generation_config.json"
TOKENIZER = "tokenizer.json"
TEXT_ENCODER = "text_encoder.onnx"
DECODER_MERGED = "decoder_model_merged.onnx"
DECODER = "decoder_model.onnx"
DECODER_WITH_PAST = "decoder_with_past_model.onnx"
AUDIO_DECODER = "encodec_decode.onnx"

COMMON = (CONFIG, GENERATION_CONFIG, TOKENIZER, TEXT_ENCODER, AUDIO_DECODER)
DECODER_FILES = {"merged": (DECODER_MERGED,), "split": (DECODER, DECODER_WITH_PAST)}
"""The files of each decoder form (``shared.settings.DECODER_FORMS`` names them, with "auto")."""


def choose_decoder_form(model_dir: Path, decoder: str) -> str:
    """"merged" or "split"; "auto" takes the merged file when present."""
    if decoder not in DECODER_FORMS:
        raise LofiError(INVALID_PARAMS, f"decoder must be one of {', '.join(DECODER_FORMS)}, not {decoder!r}")
    if decoder == "auto":
        return "merged" if (model_dir / DECODER_MERGED).is_file() else "split"
    return decoder


def check_present(model_dir: Path, form: str) -> None:
    """MODEL_NOT_FOUND naming every missing file and the directory searched."""
    if not model_dir.is_dir():
        raise LofiError(MODEL_NOT_FOUND, f"model directory {model_dir} does not exist")
    missing = [name for name in (*COMMON, *DECODER_FILES[form]) if not (model_dir / name).is_file()]
    if missing:
        raise LofiError(MODEL_NOT_FOUND, f"missing {', '.join(missing)} in {model_dir}")
