"""Progress of a generation job: a `generation_progress` event at every 5 % (FR-010, FR-011, SC-003)."""

from __future__ import annotations

import time
from typing import Callable

from lofi_engine.shared.eta import Estimator

STEP_PERCENT = 5
MAX_PERCENT = 99


class ProgressReporter:
    """Called after each unit of work; emits one event per 5 % threshold crossed, the last at 99 %.

    ``tokens_generated`` (units done: decoder steps, or DiT steps and decode chunks) reaches ``tokens_estimated``
    exactly in the final (99 %) event; 100 % is the `generation_complete` event itself.
    """

    def __init__(self, track_id: str, estimator: Estimator, emit: Callable[[str, dict], None]) -> None:
        """``estimator``: the backend's ``progress_model(duration)``: its units of work and their ETA."""
        self.track_id = track_id
        self.total = estimator.total
        self.emit = emit
        self.eta = estimator
        self.last_percent = 0
        self.last_time = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        self.eta.record(done - 1, now - self.last_time)
        self.last_time = now
        reached = MAX_PERCENT if done >= total else min(100 * done // total // STEP_PERCENT * STEP_PERCENT, MAX_PERCENT)
        eta = round(self.eta.eta(done), 1)
        for percent in range(self.last_percent + STEP_PERCENT, reached + 1, STEP_PERCENT):
            self._send(percent, done, eta)
        if done >= total and self.last_percent < MAX_PERCENT:
            self._send(MAX_PERCENT, done, eta)

    def _send(self, percent: int, done: int, eta: float) -> None:
        self.last_percent = percent
        event = {"track_id": self.track_id, "percent": percent, "tokens_generated": done, "tokens_estimated": self.total, "eta_sec": eta}
        stage = self.eta.stage(done)
        self.emit("generation_progress", event if stage is None else {**event, "stage": stage})
