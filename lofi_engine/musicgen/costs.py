"""The ETA's price list for MusicGen (SC-003): what each part of a job costs on this machine, for this graph.

A job is a start (text encoding, the cross-attention keys/values and the first window's first step), decoder
steps whose cost grows with the cache position they read, a prefill at the start of each later window (its
context, in one call), the 2 s chunks EnCodec decodes while it composes, and the decode of the rest after
the last step. Every finished job refines the costs (:meth:`StepCosts.learn`);
they are kept on disk beside the optimized graphs, keyed by model, decoder graph, threads and ONNX Runtime version,
so the first job of a fresh engine is priced from what the jobs before it measured. The live ETA
(:class:`DecoderEta`) scales the whole price list by how fast this job's units have run so far, which follows a
machine that is busier (or quieter) than when the costs were learned.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields, replace
from itertools import accumulate
from pathlib import Path

import numpy as np

from lofi_engine.musicgen.windows import Window

log = logging.getLogger("lofi.engine")

PRIOR_PREFILL_STEPS_PER_POSITION = 0.1
"""Until this machine has measured a prefill: one prefilled position costs a tenth of a step (full-size fp32,
2 threads: 4.2 ms a position against 44 ms a step)."""
PRIOR_DECODE_STEPS_PER_FRAME = 0.033
"""Until it has measured a decode: an EnCodec frame costs a thirtieth of a step (1.45 ms against 44 ms)."""
PRIOR_CHUNK_STEPS = 7.0
"""Until it has measured a streamed chunk's decode (155 frames): seven steps (0.3 s against 40 ms)."""
PRIOR_START_STEPS = 3.0
"""Until it has measured a job's start (text encoding, cross-attention, first step): three steps."""
LIVE_UNITS = 200
"""How many of the latest units the live speed is taken from."""
LEARNING_RATE = 0.5
"""Weight of the newest job when the costs are refined."""
MIN_FIT_STEPS = 20
START, PREFILL, STEP = "start", "prefill", "step"


@dataclass(frozen=True)
class StepCosts:
    """Seconds per unit of a job. ``jobs == 0``: a prior in units of one step at position 0 (only ratios count)."""

    step_sec: float
    step_sec_per_position: float
    prefill_sec_per_position: float
    start_sec: float
    decode_sec_per_frame: float
    chunk_sec: float
    """A streamed 2 s chunk's decode (with its context and lookahead)."""
    jobs: int = 0

    @classmethod
    def prior(cls, cache_bytes_per_position: float, weight_bytes: float) -> "StepCosts":
        """Before any measurement: a step costs its weights plus the cache it reads, both memory-bound."""
        slope = cache_bytes_per_position / weight_bytes if weight_bytes > 0 else 0.0
        return cls(1.0, slope, PRIOR_PREFILL_STEPS_PER_POSITION, PRIOR_START_STEPS, PRIOR_DECODE_STEPS_PER_FRAME, PRIOR_CHUNK_STEPS)

    def step(self, position: int) -> float:
        return self.step_sec + self.step_sec_per_position * position

    def unit(self, kind: str, position: int) -> float:
        """One unit of :func:`job_units`: a job's start, a window's prefill of ``position`` positions, or a step."""
        if kind == START:
            return self.start_sec
        return self.step(position) + (self.prefill_sec_per_position * position if kind == PREFILL else 0.0)

    def decode(self, frames: int) -> float:
        return self.decode_sec_per_frame * frames

    def learn(self, windows: list[Window], unit_sec: list[float], decode_frames: int, decode_sec: float, chunk_sec: float | None = None) -> "StepCosts":
        """These costs refined by one finished job: ``unit_sec`` are its units' seconds, in order (see
        :func:`job_units`) and without the streamed chunks' decodes, ``decode_sec`` its final decode's,
        ``chunk_sec`` what a streamed chunk's decode took (None: nothing was streamed)."""
        kinds = job_units(windows)
        steps = [(position, sec) for (kind, position), sec in zip(kinds, unit_sec) if kind == STEP]
        measured = {"decode_sec_per_frame": decode_sec / max(decode_frames, 1)}
        if chunk_sec is not None:
            measured["chunk_sec"] = chunk_sec
        measured |= {"start_sec": sec for (kind, _), sec in zip(kinds, unit_sec) if kind == START}
        if len(steps) >= MIN_FIT_STEPS:
            positions, seconds = np.array(steps, dtype=np.float64).T
            slope = 0.0
            if np.ptp(positions) >= MIN_FIT_STEPS:
                slope = max(0.0, float(np.polyfit(positions, seconds, 1)[0]))
            measured["step_sec_per_position"] = slope
            measured["step_sec"] = max(1e-6, float(np.mean(seconds - slope * positions)))
        base = self if self.jobs else self._in_seconds(measured.get("step_sec"))
        if base is None:
            return self  # too short to say what a step costs: nothing learned
        step_of = replace(base, **{k: v for k, v in measured.items() if k in ("step_sec", "step_sec_per_position")})
        prefills = [
            (sec - step_of.step(position)) / position for (kind, position), sec in zip(kinds, unit_sec) if kind == PREFILL
        ]
        if prefills:
            measured["prefill_sec_per_position"] = max(0.0, float(np.mean(prefills)))
        rate = LEARNING_RATE if self.jobs else 1.0
        blended = {k: (1 - rate) * getattr(base, k) + rate * v for k, v in measured.items()}
        return replace(base, **blended, jobs=self.jobs + 1)

    def _in_seconds(self, step_sec: float | None) -> "StepCosts | None":
        """The prior (in steps) turned into seconds with a measured step cost."""
        if step_sec is None:
            return None
        return StepCosts(*(getattr(self, f.name) * step_sec for f in fields(self) if f.name != "jobs"))


def job_units(windows: list[Window]) -> list[tuple[str, int]]:
    """Every unit of a job in order, ``(kind, cache_position)``: a window's first unit prefills its context
    (``cache_position`` positions at once; with no context, that is the job's start), then one step a unit."""
    return [
        (STEP if k else PREFILL if w.prompt_frames else START, position)
        for w in windows for k, position in enumerate(w.cache_positions)
    ]


class DecoderEta:
    """Seconds left in a MusicGen job: the remaining units and the final decode at this machine's prices,
    scaled by how this job's latest units compared with those prices.

    ``chunks``: how many streamed chunks are decoded after each unit (:func:`..streaming.chunk_schedule`); their
    time falls in the next unit's (after the last unit: before the final decode), so that unit is priced with it.
    """

    def __init__(self, windows: list[Window], decode_frames: int, costs: StepCosts, chunks: list[int] | None = None) -> None:
        self.predicted = [costs.unit(kind, position) for kind, position in job_units(windows)]
        self.total = len(self.predicted)
        self.decode = costs.decode(decode_frames)
        for unit, count in enumerate(chunks or []):
            if unit + 1 < self.total:
                self.predicted[unit + 1] += count * costs.chunk_sec
            else:
                self.decode += count * costs.chunk_sec
        self._left = list(accumulate(reversed(self.predicted + [self.decode])))[::-1]  # _left[i]: units i… + decode
        self._measured = [0.0] * self.total

    def record(self, step_index: int, seconds: float) -> None:
        self._measured[step_index] = seconds

    def stage(self, steps_done: int) -> str | None:
        return None

    def eta(self, steps_done: int) -> float:
        if steps_done <= 0:
            return 0.0
        lo = max(1, steps_done - LIVE_UNITS) if steps_done > 1 else 0  # the job's start is not a step's speed
        speed = sum(self._measured[lo:steps_done]) / max(sum(self.predicted[lo:steps_done]), 1e-12)
        return speed * self._left[min(steps_done, self.total)]


@dataclass(frozen=True)
class CostStore:
    """The learned costs of every model and graph this machine ran, one JSON file (written whole, then renamed)."""

    path: Path

    def load(self, key: str) -> StepCosts | None:
        try:
            entry = json.loads(self.path.read_text(encoding="utf-8"))[key]
            costs = StepCosts(**entry)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if not isinstance(exc, KeyError):
                log.warning("ignoring unreadable step costs %s: %s", self.path, exc)
            return None
        return costs if costs.jobs > 0 and all(np.isfinite(v) and v >= 0 for v in asdict(costs).values()) else None

    def save(self, key: str, costs: StepCosts) -> None:
        try:
            try:
                entries = json.loads(self.path.read_text(encoding="utf-8"))
                entries = entries if isinstance(entries, dict) else {}
            except (OSError, ValueError):
                entries = {}
            entries[key] = asdict(costs)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # an ETA that learns less is no reason to fail a track
            log.warning("cannot keep step costs in %s: %s", self.path, exc)
            return
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:  # a full disk: nothing half-written is left behind
            temporary.unlink(missing_ok=True)
            log.warning("cannot keep step costs in %s: %s", self.path, exc)
