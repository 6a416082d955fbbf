"""What the engine and the CLI need of a generation backend; MusicGen and ACE-Step both provide it.

Each also has a ``load(model_dir, …)`` constructor of its own (``engine/backends.py`` picks and calls it); past
loading, the engine's queue, progress, cache and events treat them alike, and only what a backend adds (MusicGen's
streamed chunks, ACE-Step's cancellation) is asked for by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from lofi_engine.shared.eta import Estimator
from lofi_engine.shared.track import Finished

if TYPE_CHECKING:
    from lofi_engine.shared.request import GenerateRequest

StepCallback = Callable[[int, int], None]
"""``on_step(done, total)`` after each unit of work."""


class Backend(Protocol):
    model_version: str

    @property
    def sample_rate(self) -> int: ...

    def progress_model(self, request: GenerateRequest) -> Estimator:
        """The units of work the request takes, and the ETA over them."""
        ...

    def run(self, request: GenerateRequest, on_step: StepCallback | None = None) -> Finished:
        """Compose a parsed request; the same request gives the same audio."""
        ...
