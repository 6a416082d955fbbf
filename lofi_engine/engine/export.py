"""`python -m lofi_engine.engine.export SOURCE TARGET FORMAT [--make-dirs]`: a track written in another format.

Written to a temp name beside TARGET and renamed into place (a link at TARGET is replaced, never written through);
TARGET's missing folders are made only with ``--make-dirs``. On failure nothing is left. Errors end the process
with ``CODE: message`` on its last line of stderr.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import soundfile

from lofi_engine.engine.wav import default_file_mode
from lofi_engine.shared.errors import INVALID_PARAMS, WRITE_FAILED, LofiError

FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III")}


def export(source: Path, target: Path, kind: str, make_dirs: bool = False) -> None:
    container, subtype = FORMATS[kind]
    if container not in soundfile.available_formats():
        raise LofiError(INVALID_PARAMS, f"this libsndfile cannot write {kind}; choose one of {', '.join(k for k, (c, _) in FORMATS.items() if c in soundfile.available_formats())}")
    audio, rate = soundfile.read(str(source), dtype="float32")
    tmp = None
    try:
        if make_dirs:
            target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            soundfile.write(handle, audio, rate, format=container, subtype=subtype)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, target)
    except (OSError, RuntimeError, AssertionError) as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        free = shutil.disk_usage(target.parent).free if target.parent.exists() else 0
        raise LofiError(WRITE_FAILED, f"cannot write {target}: {exc} ({free / 1e6:.0f} MB free)") from None


def main(argv: list[str]) -> int:
    source, target, kind, *flags = argv
    try:
        export(Path(source), Path(target), kind, make_dirs=flags == ["--make-dirs"])
    except LofiError as exc:
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
