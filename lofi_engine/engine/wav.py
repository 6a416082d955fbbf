"""Writing tracks: a temp name in the destination directory, renamed into place once complete."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from lofi_engine.shared.errors import WRITE_FAILED, LofiError


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM WAV (mono ``[samples]`` or ``[samples, channels]``) at ``path``; never a half-written file there."""
    path = Path(path).expanduser().resolve()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            soundfile.write(f, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise LofiError(WRITE_FAILED, f"cannot write {path}: {exc.strerror or exc}") from None
    return path
