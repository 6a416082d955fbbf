"""One thread that hands every event to the caller's callback, in order, never under the service's lock."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from lofi_engine.shared.events import event

EventCallback = Callable[[str, dict], None]
log = logging.getLogger("lofi.service")


class EventDispatcher:
    def __init__(self, on_event: EventCallback) -> None:
        self._on_event = on_event
        self._events: queue.Queue[tuple[str, dict] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="lofi-events", daemon=True)
        self._thread.start()

    def emit(self, name: str, fields: dict) -> None:
        """Queue an event (checked against its declaration) for the callback."""
        self._events.put(event(name, fields))

    def close(self, timeout: float) -> None:
        self._events.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._events.get()
            if item is None:
                return
            try:
                self._on_event(*item)
            except Exception:
                log.exception("event handler failed for %s", item[0])
