"""Seconds left in a job, from what its units of work cost so far (SC-003).

Each backend says what its units of work are (``progress_model``); the engine's progress reporter asks these for
the ETA it sends with every `generation_progress` event.
"""

from __future__ import annotations

from typing import Union


class EtaEstimator:
    """Seconds left, from a least-squares fit of step time against cache position.

    A decoder step reads the whole key/value cache, so its cost grows with position; a plain average of past
    steps would promise too little for long tracks. ``positions`` is the cache position of every step of the job.
    """

    def __init__(self, positions: list[int]) -> None:
        self.positions = positions
        self.total = len(positions)
        self.remaining_position_sum = float(sum(positions))
        self.n = self.sp = self.st = self.spp = self.spt = 0.0

    def record(self, step_index: int, seconds: float) -> None:
        p = float(self.positions[step_index])
        self.remaining_position_sum -= p
        self.n += 1
        self.sp += p
        self.st += seconds
        self.spp += p * p
        self.spt += p * seconds

    def stage(self, steps_done: int) -> str | None:
        return None

    def eta(self, steps_done: int) -> float:
        remaining = len(self.positions) - steps_done
        if remaining <= 0 or self.n == 0:
            return 0.0
        mean_t = self.st / self.n
        spread = self.spp - self.sp * self.sp / self.n
        slope = (self.spt - self.sp * self.st / self.n) / spread if spread > 1e-9 else 0.0
        slope = max(slope, 0.0)
        intercept = mean_t - slope * self.sp / self.n
        return max(0.0, intercept * remaining + slope * self.remaining_position_sum)


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


Estimator = Union[EtaEstimator, StageEta]
