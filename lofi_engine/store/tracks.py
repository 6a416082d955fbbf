"""Finished tracks on disk: `<track_id>.wav` plus `<track_id>.json`, bounded in size (FR-013…FR-015).

The metadata file is written last (to a temp name, then renamed), so a track counts as cached only once both
files are complete. A track id is what :func:`lofi_engine.shared.track.track_id` makes (16 lowercase hex digits)
and is checked at every way in, so no id names a path outside the cache; the path a track is played from is
the one computed here, never one read back from its JSON. Standard library only.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lofi_engine.shared.errors import INVALID_PARAMS, WRITE_FAILED, LofiError
from lofi_engine.store.jsonfile import read_json, write_json_atomic

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, every start repairs only what is surely stale
    fcntl = None  # type: ignore[assignment]

STALE_PART_SEC = 600.0
"""With another editor using the same cache, leftovers younger than this may be its work in progress."""
LOCK_FILE = ".lock"
"""flock'ed shared by every process using the cache; a client that can take it exclusively as it starts is alone."""
LOCK_WAIT_SEC = 5.0
TRACK_ID = re.compile(r"[0-9a-f]{16}")


def check_track_id(track_id: object) -> str:
    """``track_id`` if it is a track id (16 lowercase hex digits), else INVALID_PARAMS."""
    if isinstance(track_id, str) and TRACK_ID.fullmatch(track_id):
        return track_id
    shown = repr(track_id)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise LofiError(INVALID_PARAMS, f"track_id must be 16 lowercase hexadecimal digits, not {shown}")


@dataclass
class TrackCache:
    root: Path
    max_bytes: int
    _lock_fd: int | None = field(default=None, init=False, repr=False, compare=False)
    _lock_mode: str | None = field(default=None, init=False, repr=False, compare=False)

    # ---- paths ----------------------------------------------------------------------------------------------------

    def wav_path(self, track_id: str) -> Path:
        self._hold()
        return self.root / f"{check_track_id(track_id)}.wav"

    def meta_path(self, track_id: str) -> Path:
        self._hold()
        return self.root / f"{check_track_id(track_id)}.json"

    def chunks_dir(self, track_id: str) -> Path:
        self._hold()
        return self.root / f"{check_track_id(track_id)}.chunks"

    def chunk_path(self, track_id: str, first_sample: int) -> Path:
        """Where a streamed piece of an unfinished track goes (named by its first sample, so they sort in order)."""
        if isinstance(first_sample, bool) or not isinstance(first_sample, int) or first_sample < 0:
            raise LofiError(INVALID_PARAMS, f"a chunk starts at a sample number, not {first_sample!r}")
        return self.chunks_dir(track_id) / f"{first_sample:012d}.wav"

    # ---- starting -------------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the cache directory and repair what a crash left behind; call once as a client starts.

        WRITE_FAILED naming the directory when it cannot be created or written (``/proc/x``, a read-only disk, a
        file in its place)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if self._lock_fd is None:  # also proves the directory writable
                self._lock_fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LofiError(
                WRITE_FAILED, f"cannot use {self.root} as the track cache: {exc.strerror or exc}; set cache_dir (--cache-dir) to a writable directory"
            ) from None
        self.repair()

    def repair(self) -> None:
        """Put the cache back in order after a crash (as a client starts).

        Removed: temp files of interrupted writes, WAVs whose metadata was never written (a kill between the two),
        metadata without its WAV or unreadable, and streamed chunk folders (those of finished tracks are copies of
        the WAV; those of unfinished ones are a crashed generation's). When another client is using the cache at
        the same time, only what is older than :data:`STALE_PART_SEC` and surely not its work in progress goes."""
        if not self.root.is_dir():
            return
        alone = self._take_lock()
        cutoff = time.time() - STALE_PART_SEC
        try:
            for entry in list(os.scandir(self.root)):
                try:
                    self._repair_entry(entry, alone or _mtime(entry) < cutoff, alone)
                except (OSError, LofiError):
                    pass  # vanished meanwhile, or not ours to fix
        finally:
            self._share_lock()

    def _repair_entry(self, entry: os.DirEntry, stale: bool, alone: bool) -> None:
        name = entry.name
        if name == LOCK_FILE:
            return
        if name.startswith(".") and name.endswith(".part"):
            if stale and not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
            return
        stem, dot, kind = name.partition(".")
        if not dot or not TRACK_ID.fullmatch(stem):
            return  # not a name this cache makes: left alone (and counted in its size)
        if kind == "json" and not self._wav_ok(stem):
            os.unlink(entry.path)  # metadata of a track whose WAV is gone (the WAV is always written first)
        elif kind == "json" and self.get(stem) is None:
            self.remove(stem)  # unreadable or foreign metadata: the track is incomplete
        elif kind == "wav" and stale and self.get(stem) is None:
            os.unlink(entry.path)  # killed between the WAV's rename and its metadata's: never listed, never evicted
        elif kind == "chunks" and entry.is_dir(follow_symlinks=False):
            finished = self.get(stem) is not None
            # a finished track's chunks may be looping in a live editor's player; only a lone client drops them
            if (finished and alone) or (not finished and stale):
                shutil.rmtree(entry.path, ignore_errors=True)

    def _hold(self) -> None:
        """Hold the lock shared, so that a client starting meanwhile knows this cache is in use (the engine process
        writing a track holds it too). Waits a few seconds at most for a starting client's repair to end."""
        if fcntl is None or self._lock_mode is not None:
            return
        try:
            if self._lock_fd is None:
                self._lock_fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            deadline = time.monotonic() + LOCK_WAIT_SEC
            while True:
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    self._lock_mode = "shared"
                    return
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        return
                    time.sleep(0.02)
        except OSError:
            return  # no directory yet, or a filesystem without locks: tried again at the next use

    def _take_lock(self) -> bool:
        """Whether this client is the only one using the cache (it then holds the lock exclusively until
        :meth:`_share_lock`)."""
        if fcntl is None:
            return False
        try:
            if self._lock_fd is None:
                self._lock_fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._lock_mode = "exclusive"
            return True
        except OSError:
            self._lock_mode = None  # a failed conversion may have dropped a shared lock held before: take it again
            self._hold()
            return False

    def _share_lock(self) -> None:
        if self._lock_mode == "exclusive":
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
                self._lock_mode = "shared"
            except OSError:
                pass

    def close(self) -> None:
        """Let go of the lock (a client closing); the cache stays usable."""
        fd, self._lock_fd, self._lock_mode = self._lock_fd, None, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ---- tracks ---------------------------------------------------------------------------------------------------

    def remove_chunks(self, track_id: str) -> None:
        shutil.rmtree(self.chunks_dir(track_id), ignore_errors=True)

    def get(self, track_id: str) -> dict[str, Any] | None:
        """The track's metadata if both of its files are complete, else None; ``path`` is where its WAV is."""
        meta_path, wav_path = self.meta_path(track_id), self.wav_path(track_id)
        if not _regular_file(meta_path) or not self._wav_ok(track_id):
            return None
        meta = read_json(meta_path, None)
        if not isinstance(meta, dict) or meta.get("track_id") != track_id:
            return None
        return {**meta, "path": str(wav_path)}

    def put(self, meta: dict[str, Any]) -> None:
        """Record a track whose WAV is already in place; the metadata marks it complete."""
        track_id = check_track_id(meta.get("track_id"))
        now = time.time()
        write_json_atomic(self.meta_path(track_id), {**meta, "path": str(self.wav_path(track_id)), "created_at": now, "last_played_at": now})

    def touch(self, track_id: str) -> dict[str, Any] | None:
        """Mark a track as just played (eviction keeps recently played tracks)."""
        meta = self.get(track_id)
        if meta is not None:
            meta["last_played_at"] = time.time()
            write_json_atomic(self.meta_path(track_id), meta)
        return meta

    def tracks(self) -> list[dict[str, Any]]:
        """Every complete track, most recently played first, with its size on disk (streamed chunks included)."""
        found = []
        for meta_file in self.root.glob("*.json"):
            if not TRACK_ID.fullmatch(meta_file.stem):
                continue
            meta = self.get(meta_file.stem)
            if meta is not None:
                meta["size_bytes"] = self._size(meta_file.stem)
                found.append(meta)
        return sorted(found, key=_last_played, reverse=True)

    def total_bytes(self) -> int:
        """Everything the cache directory holds: tracks, their chunks, temp files and anything else in it."""
        return _tree_size(self.root)

    def evict(self, keep: str | None = None, spare_chunks: bool = False) -> list[str]:
        """Free space until everything the cache holds fits ``max_bytes``: first the chunk folders of finished tracks
        (copies of their WAVs; ``keep``'s, the track that has just finished, last, unless ``spare_chunks``: a player
        still reads them), then least-recently-played tracks, never ``keep`` itself. Returns the ids of the tracks
        removed."""
        total = self.total_bytes()
        if total <= self.max_bytes:
            return []
        tracks = self.tracks()
        by_age = [m["track_id"] for m in reversed(tracks) if m["track_id"] != keep]
        for track_id in by_age + ([keep] if keep is not None and not spare_chunks else []):
            if total <= self.max_bytes:
                return []
            size = _tree_size(self.chunks_dir(track_id))
            if size:
                self.remove_chunks(track_id)
                total -= size
        removed = []
        for track_id in by_age:
            if total <= self.max_bytes:
                break
            total -= self._size(track_id)
            self.remove(track_id)
            removed.append(track_id)
        return removed

    def remove(self, track_id: str) -> None:
        self.remove_chunks(track_id)
        self.meta_path(track_id).unlink(missing_ok=True)
        self.wav_path(track_id).unlink(missing_ok=True)

    def _wav_ok(self, track_id: str) -> bool:
        return _regular_file(self.wav_path(track_id))

    def _size(self, track_id: str) -> int:
        size = _tree_size(self.chunks_dir(track_id))
        for path in (self.wav_path(track_id), self.meta_path(track_id)):
            try:
                size += os.lstat(path).st_size
            except OSError:
                pass
        return size


def _regular_file(path: Path) -> bool:
    """A file of its own, not a link to one elsewhere."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _mtime(entry: os.DirEntry) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return math.inf


def _last_played(meta: dict[str, Any]) -> float:
    value = meta.get("last_played_at")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.0
    return float(value)


def _tree_size(path: Path) -> int:
    """Bytes of every file under ``path`` (or of ``path`` itself), links not followed."""
    total = 0
    try:
        top = os.lstat(path)
    except OSError:
        return 0
    if not stat.S_ISDIR(top.st_mode):
        return top.st_size
    for folder, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if not stat.S_ISDIR(info.st_mode):
                total += info.st_size
    return total
