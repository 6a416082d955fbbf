"""One exception family for every failure a user can see, each with the spec's error code."""

from __future__ import annotations

from pathlib import Path

MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
MODEL_LOAD_FAILED = "MODEL_LOAD_FAILED"
MODEL_INFERENCE_FAILED = "MODEL_INFERENCE_FAILED"
MODEL_DOWNLOAD_FAILED = "MODEL_DOWNLOAD_FAILED"
INVALID_DURATION = "INVALID_DURATION"
INVALID_PROMPT = "INVALID_PROMPT"
INVALID_PARAMS = "INVALID_PARAMS"
DEVICE_UNAVAILABLE = "DEVICE_UNAVAILABLE"
QUEUE_FULL = "QUEUE_FULL"
WRITE_FAILED = "WRITE_FAILED"
CANCELLED = "CANCELLED"
INVALID_REQUEST = "INVALID_REQUEST"
"""`lofi serve`: a line that is not one JSON-RPC 2.0 request (bad JSON or UTF-8, too long, too deep, a batch)."""
TRACK_NOT_FOUND = "TRACK_NOT_FOUND"
"""A track id that names no track in the store."""
PLAYER_UNAVAILABLE = "PLAYER_UNAVAILABLE"
"""No audio player could be started (mpv is not installed, or the configured command fails)."""
NOT_PLAYING = "NOT_PLAYING"
"""A player request that acts on what plays (pause, resume, toggle, skip, seek) while nothing does."""
PLAYBACK_FAILED = "PLAYBACK_FAILED"
"""The player stopped with an error (its own message says why)."""
INVALID_AUDIO = "INVALID_AUDIO"
"""Audio to continue that cannot be: missing, unreadable, not a regular file, silent or too short (names the file)."""
ENGINE_UNAVAILABLE = "ENGINE_UNAVAILABLE"
"""The engine command (``engine_command``: ssh to another machine) could not be started, or it ended before the engine
answered (the command's own message says why)."""
ENGINE_VERSION_MISMATCH = "ENGINE_VERSION_MISMATCH"
"""The engine at the other end of ``engine_command`` speaks another version of the engine protocol (names both)."""
INTERNAL_ERROR = "INTERNAL_ERROR"
"""`lofi serve`: a failure no other code describes (a bug); the server keeps serving."""


class LofiError(Exception):
    """An error with a stable machine-readable ``code`` and a message meant for the user."""

    def __init__(self, code: str, message: str, path: Path | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.path = path
        """MODEL_LOAD_FAILED: the one file found bad (unreadable, corrupt, nonsensical), when one file is at fault;
        None when the failure is not that file's (out of memory, a cache that could not be saved)."""

    def __reduce__(self):  # picklable across the engine's pipe, path included
        return (type(self), (self.code, self.message, self.path))

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
