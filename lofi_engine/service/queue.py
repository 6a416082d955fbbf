"""The service's job queue: priorities, the limit of waiting jobs, and the download question jobs wait on.

Whether a MusicGen job needs a download is known here, before anything is sent to the engine (the model store is
on disk): such a job waits for the user's answer, and once they agree a download job goes ahead of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from lofi_engine.shared.errors import QUEUE_FULL, LofiError
from lofi_engine.shared.protocol import DownloadJob, GenerateJob, RadioWindowJob
from lofi_engine.shared.settings import MAX_PENDING, EngineConfig
from lofi_engine.store.catalogue import ENCODEC


@dataclass
class QueuedJob:
    work: Union[GenerateJob, DownloadJob, RadioWindowJob]
    config: EngineConfig
    """The settings it was queued with; it runs with them even when ``setup()`` changes them meanwhile."""
    priority: str = "normal"
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    percent: int = 0
    eta_sec: float | None = None
    attempts: int = 0
    """Times it started again because the engine elsewhere could not be reached."""

    @property
    def track_id(self) -> str | None:
        return self.work.track_id if isinstance(self.work, GenerateJob) else None

    @property
    def musicgen(self) -> bool:
        """A MusicGen job or radio window: it needs MusicGen's model (and EnCodec's weights when it continues audio)."""
        return isinstance(self.work, RadioWindowJob) or (isinstance(self.work, GenerateJob) and self.work.request.backend == "musicgen")

    def view(self, position: int) -> dict[str, Any]:
        kind = "generate" if isinstance(self.work, GenerateJob) else "radio" if isinstance(self.work, RadioWindowJob) else "download"
        view = {"kind": kind, "position": position, "priority": self.priority, "percent": self.percent, "eta_sec": self.eta_sec}
        if isinstance(self.work, GenerateJob):
            view.update({"track_id": self.work.track_id, **self.work.request.describe()})
        return view


class JobQueue:
    def __init__(self, have: Callable[[EngineConfig, str], bool]) -> None:
        """``have(config, name)``: whether the engine that runs jobs with ``config`` has the download ``name``."""
        self.have = have
        self.pending: list[QueuedJob] = []
        self.running: QueuedJob | None = None
        self.resume_at = 0.0
        """Monotonic time before which nothing starts (the engine elsewhere is tried again then)."""
        self.question: dict[str, Any] | None = None
        """The download question waiting for the user's answer (`consent_required`'s fields), if any."""

    def jobs(self) -> list[QueuedJob]:
        """The running job first, then the pending ones in the order they will run."""
        return ([self.running] if self.running is not None else []) + self.pending

    def find(self, track_id: str) -> tuple[int, QueuedJob] | None:
        for position, job in enumerate(self.jobs()):
            if job.track_id == track_id:
                return position, job
        return None

    def add(self, job: QueuedJob) -> int:
        """Queue a generation (high priority ahead of every normal job, after earlier high ones); its position."""
        if len(self.pending) >= MAX_PENDING:
            raise LofiError(QUEUE_FULL, f"{MAX_PENDING} requests are already waiting; try again when one finishes")
        index = sum(1 for j in self.pending if j.priority == "high") if job.priority == "high" else len(self.pending)
        self.pending.insert(index, job)
        return self.jobs().index(job)

    def add_download(self, config: EngineConfig, name: str) -> None:
        """The agreed download (a variant, or ENCODEC), ahead of everything (once)."""
        if name not in self.downloads():
            self.pending.insert(0, QueuedJob(DownloadJob(name), config, "high"))

    def missing(self, job: QueuedJob) -> str | None:
        """What ``job`` waits for: its MusicGen variant while the engine lacks it, then EnCodec's weights (ENCODEC)
        when it continues audio and they are not there either; None when it can run."""
        if not job.musicgen:
            return None
        if not self.have(job.config, str(job.config.variant)):
            return str(job.config.variant)
        if job.work.continue_from is not None and not self.have(job.config, ENCODEC):  # type: ignore[union-attr]
            return ENCODEC
        return None

    def downloads(self) -> set[str]:
        """The downloads queued or running."""
        return {j.work.variant for j in self.jobs() if isinstance(j.work, DownloadJob)}

    def waiting_for_download(self, name: str) -> list[QueuedJob]:
        return [j for j in self.pending if self.missing(j) == name]

    def remove(self, jobs: list[QueuedJob]) -> None:
        self.pending = [j for j in self.pending if j not in jobs]

    def start_next(self) -> QueuedJob | None:
        """Take the first job that can run now: a download, or a generation that needs none (jobs waiting for a
        download stay, so ACE-Step jobs and MusicGen jobs on a present model go ahead of them)."""
        if self.running is not None or time.monotonic() < self.resume_at:
            return None
        job = next((j for j in self.pending if self.missing(j) is None), None)
        if job is None:
            return None
        self.pending.remove(job)
        job.started_at = time.time()
        self.running = job
        return job

    def requeue(self, job: QueuedJob) -> None:
        """The running job goes first again."""
        if self.running is job:
            self.running = None
        job.percent, job.eta_sec = 0, None
        self.pending.insert(0, job)

    def finish(self) -> QueuedJob | None:
        job, self.running = self.running, None
        return job
