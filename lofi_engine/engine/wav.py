"""Writing tracks: a temp name in the destination directory, renamed into place once complete."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from lofi_engine.shared.errors import WRITE_FAILED, LofiError


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM WAV (mono ``[samples]`` or ``[samples, channels]``) at ``path``; never a half-written file there.

    The WAV is encoded in memory and written with plain file writes, so a full disk or a failing device is one
    OSError (soundfile writing to a file itself reports it as AssertionError or LibsndfileError, or not at all):
    WRITE_FAILED with the free space, and the temp file removed."""
    path = Path(path).expanduser().resolve()
    encoded = io.BytesIO()
    soundfile.write(encoded, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(encoded.getbuffer())
            f.flush()
            os.fsync(f.fileno())  # space a filesystem only claims at writeback (NFS, quotas) fails here, not later
        os.chmod(tmp, default_file_mode())  # as any file the user makes (a temp file starts private)
        os.replace(tmp, path)
    except (OSError, RuntimeError, AssertionError) as exc:
        _remove(tmp)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
        raise LofiError(WRITE_FAILED, f"cannot write {path}: {reason}{_free_space(path.parent)}") from None
    except BaseException:
        _remove(tmp)
        raise
    return path


def default_file_mode() -> int:
    """0666 less the user's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _remove(tmp: str | None) -> None:
    if tmp is not None:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _free_space(directory: Path) -> str:
    """`` (N MB free of M MB on DIR)`` for the nearest existing folder, or nothing when that is unknown."""
    for folder in (directory, *directory.parents):
        try:
            usage = shutil.disk_usage(folder)
        except OSError:
            continue
        return f" ({_size(usage.free)} free of {_size(usage.total)} on {folder})"
    return ""


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
