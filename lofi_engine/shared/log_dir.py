"""Where the logs go: the state directory when it can be written, else a private folder in the temp directory.

Every process that writes a log (the remote plugin, the service, the engine and the player) asks here with the
same preferred folder, so they all land in the same place and each can say why it is not the usual one.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def writable_log_dir(preferred: Path) -> tuple[Path, str | None]:
    """``(folder, problem)``: ``preferred`` and None when a file can be created in it (made if missing); otherwise a
    folder of this user's own under the temp directory and a sentence naming ``preferred`` and what is wrong."""
    try:
        _check_writable(preferred)
        return preferred, None
    except OSError as exc:
        reason = exc.strerror or str(exc)
    fallback = _private_temp_dir()
    return fallback, f"cannot write logs in {preferred} ({reason}); they go to {fallback} until it can be written"


def _check_writable(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".lofi-probe-", dir=folder)
    os.close(fd)
    os.unlink(probe)


def _private_temp_dir() -> Path:
    """``$TMPDIR/lofi.nvim-UID``: made 0700; used only when it is a real folder of this user's, else a fresh one."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    folder = Path(tempfile.gettempdir()) / f"lofi.nvim-{uid}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        found = os.lstat(folder)
        if stat.S_ISDIR(found.st_mode) and found.st_uid == uid and found.st_mode & 0o077 == 0:
            _check_writable(folder)
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="lofi.nvim-logs-"))
