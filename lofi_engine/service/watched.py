"""What the engine's links (and the player's) share: the process they serve, when it last spoke, and a watchdog that
ends one gone silent."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from lofi_engine.shared.protocol import HEARTBEAT_SEC

log = logging.getLogger("lofi.service")


class Watched:
    def __init__(self, name: str) -> None:
        self.name = name
        self._process: Any = None
        self._settings: dict[str, Any] | None = None
        self._last_seen: float | None = None  # monotonic time of the process's last message; None until its first
        self._stalled: set[int] = set()  # pids the watchdog ended

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def _heard_from(self, process: Any) -> None:
        if self._process is process:
            self._last_seen = time.monotonic()

    def crashed(self, process: Any) -> bool:
        """Whether ``process`` ended without being stopped (then it is forgotten, and the next job starts another)."""
        if self._process is not process:
            return False
        self._process, self._settings = None, None
        return True

    def stalled(self, process: Any) -> bool:
        """Whether the watchdog ended ``process`` for going silent."""
        return process.pid in self._stalled

    def _watch(self, process: Any, timeout: float, end: Callable[[Any], None]) -> None:
        """``end`` a process that has sent nothing for ``timeout`` seconds since its first message (stopped, frozen,
        swapped to death, or at the end of a hung network); its reader then reports it gone like a crash."""
        while self._process is process and process.is_alive():
            time.sleep(HEARTBEAT_SEC / 2)
            last = self._last_seen
            if last is not None and self._process is process and time.monotonic() - last > timeout:
                log.warning("%s %s sent nothing for %.0f s: ending it", self.name, process.pid, timeout)
                self._stalled.add(process.pid)
                end(process)
                return
