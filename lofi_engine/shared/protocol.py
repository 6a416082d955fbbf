"""What travels over the pipe between the service and the engine process.

The service sends :class:`GenerateJob`, :class:`DownloadJob` or :data:`SHUTDOWN`; the engine answers with events,
``(name, fields)`` pairs declared in :mod:`lofi_engine.shared.events`, and :data:`HEARTBEAT` every
:data:`HEARTBEAT_SEC` while it runs (a stopped or frozen engine sends none: the service's watchdog notices).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from lofi_engine.shared.request import GenerateRequest

SHUTDOWN = "shutdown"
HEARTBEAT = "heartbeat"
HEARTBEAT_SEC = 1.0


@dataclass(frozen=True)
class GenerateJob:
    request: GenerateRequest
    track_id: str
    model_version: str


@dataclass(frozen=True)
class DownloadJob:
    variant: str


Job = Union[GenerateJob, DownloadJob]
