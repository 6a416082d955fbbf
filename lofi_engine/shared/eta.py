"""Seconds left in a job, from what its units of work cost so far (SC-003).

Each backend says what its units of work are (``progress_model``); the engine's progress reporter asks these for
the ETA it sends with every `generation_progress` event.
"""

from __future__ import annotations

from typing import Protocol


class StageEta:
    """Seconds left for a job whose units are of different kinds (ACE-Step: DiT steps, then decode chunks).

    A kind's unit costs the mean of its measured units; a kind not measured yet is priced from a measured one
    through ``costs``, each unit's expected cost relative to the others (only the ratios matter).
    """

    def __init__(self, units: list[str], costs: list[float]) -> None:
        self.units = units
        self.total = len(units)
        self.costs = costs
        self.seconds: dict[str, float] = {}
        self.cost_done: dict[str, float] = {}

    def record(self, step_index: int, seconds: float) -> None:
        kind = self.units[step_index]
        self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds
        self.cost_done[kind] = self.cost_done.get(kind, 0.0) + self.costs[step_index]

    def stage(self, steps_done: int) -> str | None:
        """The kind of the unit just done, reported with the progress."""
        return self.units[steps_done - 1]

    def eta(self, steps_done: int) -> float:
        if not self.seconds:
            return 0.0
        rate = {kind: self.seconds[kind] / max(self.cost_done[kind], 1e-12) for kind in self.seconds}
        fallback = sum(self.seconds.values()) / max(sum(self.cost_done.values()), 1e-12)
        return sum(rate.get(kind, fallback) * cost for kind, cost in zip(self.units[steps_done:], self.costs[steps_done:]))


class Estimator(Protocol):
    """A job's units of work and the seconds left after ``steps_done`` of them (MusicGen's is
    :class:`lofi_engine.musicgen.costs.DecoderEta`, ACE-Step's :class:`StageEta`)."""

    total: int

    def record(self, step_index: int, seconds: float) -> None: ...

    def stage(self, steps_done: int) -> str | None: ...

    def eta(self, steps_done: int) -> float: ...
