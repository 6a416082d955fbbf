"""What the engine needs of a generation backend; MusicGen and ACE-Step both provide it.

Each also has a ``load(model_dir, …)`` constructor of its own; past loading, the engine's queue, progress, cache and
events treat them alike, and only what a backend adds (MusicGen's streamed chunks, ACE-Step's cancellation) is
asked for by name.
"""

from __future__ import annotations

from typing import Callable, Protocol

from lofi_engine.shared.eta import Estimator
from lofi_engine.shared.track import Finished


class Backend(Protocol):
    model_version: str

    @property
    def sample_rate(self) -> int: ...

    def progress_model(self, duration_sec: float) -> Estimator:
        """The units of work a piece of ``duration_sec`` takes, and the ETA over them."""
        ...

    def generate(
        self, prompt: str, duration_sec: float, seed: int | None = None, *, on_step: Callable[[int, int], None] | None = None
    ) -> Finished:
        """Compose; ``on_step(done, total)`` after each unit of work; the same arguments and seed give the same audio."""
        ...
