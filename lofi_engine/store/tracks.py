"""Finished tracks on disk: `<track_id>.wav` plus `<track_id>.json`, bounded in size (FR-013…FR-015).

The metadata file is written last (to a temp name, then renamed), so a track counts as cached only once both
files are complete. Standard library only.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lofi_engine.store.jsonfile import read_json, write_json_atomic

STALE_PART_SEC = 3600.0


@dataclass
class TrackCache:
    root: Path
    max_bytes: int

    def wav_path(self, track_id: str) -> Path:
        return self.root / f"{track_id}.wav"

    def meta_path(self, track_id: str) -> Path:
        return self.root / f"{track_id}.json"

    def chunk_path(self, track_id: str, first_sample: int) -> Path:
        """Where a streamed piece of an unfinished track goes (named by its first sample, so they sort in order)."""
        return self.root / f"{track_id}.chunks" / f"{first_sample:012d}.wav"

    def remove_chunks(self, track_id: str) -> None:
        shutil.rmtree(self.root / f"{track_id}.chunks", ignore_errors=True)

    def get(self, track_id: str) -> dict[str, Any] | None:
        """The track's metadata if both of its files are complete, else None."""
        meta = read_json(self.meta_path(track_id), None)
        if not isinstance(meta, dict) or not self.wav_path(track_id).is_file():
            return None
        return meta

    def put(self, meta: dict[str, Any]) -> None:
        """Record a track whose WAV is already in place; the metadata marks it complete."""
        now = time.time()
        write_json_atomic(self.meta_path(meta["track_id"]), {**meta, "created_at": now, "last_played_at": now})

    def touch(self, track_id: str) -> dict[str, Any] | None:
        """Mark a track as just played (eviction keeps recently played tracks)."""
        meta = self.get(track_id)
        if meta is not None:
            meta["last_played_at"] = time.time()
            write_json_atomic(self.meta_path(track_id), meta)
        return meta

    def tracks(self) -> list[dict[str, Any]]:
        """Every complete track, most recently played first, with its size on disk."""
        found = []
        for meta_file in self.root.glob("*.json"):
            meta = self.get(meta_file.stem)
            if meta is not None:
                meta["size_bytes"] = self._size(meta_file.stem)
                found.append(meta)
        return sorted(found, key=lambda m: m.get("last_played_at", 0), reverse=True)

    def total_bytes(self) -> int:
        return sum(m["size_bytes"] for m in self.tracks())

    def evict(self, keep: str | None = None) -> list[str]:
        """Delete least-recently-played tracks until the cache fits ``max_bytes``; never ``keep``."""
        tracks = self.tracks()
        total = sum(m["size_bytes"] for m in tracks)
        removed = []
        for meta in reversed(tracks):
            if total <= self.max_bytes:
                break
            if meta["track_id"] == keep:
                continue
            self.remove(meta["track_id"])
            total -= meta["size_bytes"]
            removed.append(meta["track_id"])
        return removed

    def remove(self, track_id: str) -> None:
        self.remove_chunks(track_id)
        self.meta_path(track_id).unlink(missing_ok=True)
        self.wav_path(track_id).unlink(missing_ok=True)

    def remove_stale_parts(self) -> None:
        """Temp files of writes that a crash interrupted, and streamed chunks of tracks long finished (older than
        an hour, so never another editor's work in progress)."""
        cutoff = time.time() - STALE_PART_SEC
        for part in [*self.root.glob(".*.part"), *self.root.glob("*.chunks")]:
            try:
                if part.stat().st_mtime < cutoff:
                    shutil.rmtree(part) if part.is_dir() else part.unlink()
            except OSError:
                pass

    def _size(self, track_id: str) -> int:
        size = 0
        for path in (self.wav_path(track_id), self.meta_path(track_id)):
            try:
                size += os.stat(path).st_size
            except OSError:
                pass
        return size
