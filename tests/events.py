"""Collecting an EngineClient's events in a test and waiting for them."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


class EventLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.cond = threading.Condition()

    def __call__(self, method: str, params: dict[str, Any]) -> None:
        with self.cond:
            self.events.append((method, params))
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[list[tuple[str, dict]]], bool], timeout: float = 60.0) -> list[tuple[str, dict]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; events so far: {self.events}")
                self.cond.wait(left)
            return list(self.events)

    def wait_event(self, method: str, timeout: float = 60.0, nth: int = 1, **match: Any) -> dict[str, Any]:
        """The ``nth`` event named ``method`` whose fields hold ``match``, once it has arrived."""

        def matching(events):
            return [p for m, p in events if m == method and all(p.get(k) == v for k, v in match.items())]

        return matching(self.wait_for(lambda events: len(matching(events)) >= nth, timeout))[nth - 1]

    def of(self, track_id: str) -> list[tuple[str, dict]]:
        with self.cond:
            return [(m, p) for m, p in self.events if p.get("track_id") == track_id]

    def names(self, method: str) -> list[dict]:
        with self.cond:
            return [p for m, p in self.events if m == method]
