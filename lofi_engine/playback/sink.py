"""Where the mixed stream goes: a real audio player fed raw samples on its standard input (no shell).

mpv by default: it opens the sound card, or, with ``--ao=pcm --ao-pcm-file=…`` in the command, writes exactly
what it would play to a file (how the tests listen).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

import numpy as np

from lofi_engine.playback.mixer import CHANNELS, RATE
from lofi_engine.shared.errors import PLAYBACK_FAILED, PLAYER_UNAVAILABLE, LofiError

DEFAULT_COMMAND = ("mpv", "--no-config", "--really-quiet", "--no-video", "--no-terminal")
RAW_INPUT = (
    "--demuxer=rawaudio",
    "--demuxer-rawaudio-format=floatle",
    f"--demuxer-rawaudio-rate={RATE}",
    f"--demuxer-rawaudio-channels={CHANNELS}",
    "--cache=no",
    "-",
)


@dataclass
class PlayerSink:
    command: tuple[str, ...] = DEFAULT_COMMAND
    """The player and its options; the raw-input options and ``-`` (standard input) are appended."""
    process: subprocess.Popen | None = field(default=None, init=False)

    def open(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        program = shutil.which(self.command[0])
        if program is None:
            raise LofiError(PLAYER_UNAVAILABLE, f"{self.command[0]} is not installed (install mpv to hear tracks)")
        try:
            self.process = subprocess.Popen(
                [program, *self.command[1:], *RAW_INPUT], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise LofiError(PLAYER_UNAVAILABLE, f"cannot start {self.command[0]}: {exc}") from None

    def write(self, block: np.ndarray) -> None:
        """Blocks while the player's buffer is full (a sound card sets the pace); PLAYBACK_FAILED if it died."""
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise LofiError(PLAYBACK_FAILED, f"{self.command[0]} stopped: {self._last_words()}") from None

    def close(self) -> None:
        """Let the player play out what it holds and exit."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()

    def _last_words(self) -> str:
        process = self.process
        if process is None:
            return "it is not running"
        try:
            process.wait(timeout=2)
            err = process.stderr.read().decode("utf-8", "replace").strip() if process.stderr else ""
        except (OSError, subprocess.TimeoutExpired):
            err = ""
        return err.splitlines()[-1] if err else f"exit code {process.returncode}"
