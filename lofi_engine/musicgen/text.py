"""The text condition: the prompt and the musical controls in words, tokenised (T5), through the text encoder."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from lofi_engine.inference.session import run
from lofi_engine.shared.music import MusicalControls


def described(prompt: str, music: MusicalControls) -> str:
    """What MusicGen reads: the prompt, then tempo, key and time signature as words, as its training texts had them
    ("lofi hip hop, 80 bpm, C minor")."""
    words = music.words()
    return f"{prompt}, {words}" if words else prompt


def encode_prompt(tokenizer: Tokenizer, text_encoder: ort.InferenceSession, prompt: str, guidance: bool) -> tuple[np.ndarray, np.ndarray]:
    """T5 hidden states and mask; with guidance the unconditional half is all zeros (not an empty prompt)."""
    ids = np.array([tokenizer.encode(prompt).ids], dtype=np.int64)
    mask = np.ones_like(ids)
    hidden = run(text_encoder, {"input_ids": ids, "attention_mask": mask}, "text encoder")[0]
    if guidance:
        hidden = np.concatenate([hidden, np.zeros_like(hidden)])
        mask = np.concatenate([mask, np.zeros_like(mask)])
    return hidden, mask
