"""One exception family for every failure a user can see, each with the spec's error code."""

from __future__ import annotations

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
NOT_CANCELLABLE = "NOT_CANCELLABLE"


class LofiError(Exception):
    """An error with a stable machine-readable ``code`` and a message meant for the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
