"""The track library: list, delete, clear, sizes, and export to a file of the user's choosing.

Listing and deleting go through the track store; an export, which needs soundfile to write FLAC or OGG, runs in a
short child process of the engine's interpreter (``lofi_engine.engine.export``), written to a temp name beside the
destination and renamed into place.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from lofi_engine.shared.errors import INVALID_PARAMS, TRACK_NOT_FOUND, WRITE_FAILED, LofiError
from lofi_engine.store.tracks import TrackCache

EXPORT_FORMATS = ("wav", "flac", "ogg", "mp3")
EXPORT_TIMEOUT_SEC = 120
NAME_MAX = 255
"""Bytes in a file name on the file systems users have (ext4, APFS, NTFS in UTF-16 units)."""


def handlers(cache: Callable[[], TrackCache], busy: Callable[[], set[str]], python: Callable[[], str | None]) -> dict[str, Callable[[dict], Any]]:
    """``busy()``: track ids that may not be deleted now (queued, generating or playing); ``python()``: the engine's
    interpreter."""

    def delete(p: dict) -> dict[str, Any]:
        track_id = p.get("track_id")
        store = cache()
        if store.get(str(track_id)) is None:
            raise LofiError(TRACK_NOT_FOUND, f"no cached track {track_id!r}")
        if track_id in busy():
            raise LofiError(INVALID_PARAMS, f"track {track_id} is playing or being generated; stop it first")
        store.remove(str(track_id))
        return {"deleted": [track_id]}

    def clear(p: dict) -> dict[str, Any]:
        store, keep = cache(), busy()
        deleted = [m["track_id"] for m in store.tracks() if m["track_id"] not in keep]
        for track_id in deleted:
            store.remove(track_id)
        return {"deleted": deleted, "kept": sorted(keep & {m["track_id"] for m in store.tracks()})}

    def stats(p: dict) -> dict[str, Any]:
        store = cache()
        tracks = store.tracks()
        created = [m.get("created_at", 0) for m in tracks]
        return {
            "count": len(tracks),
            "bytes": store.total_bytes(),
            "max_bytes": store.max_bytes,
            "oldest": min(created) if created else None,
            "newest": max(created) if created else None,
            "dir": str(store.root),
        }

    def save(p: dict) -> dict[str, Any]:
        track_id, destination = p.get("track_id"), p.get("path")
        store = cache()
        meta = store.get(str(track_id))
        if meta is None:
            raise LofiError(TRACK_NOT_FOUND, f"no cached track {track_id!r}")
        target, kind = _destination(destination, p.get("format"))
        make_dirs = p.get("make_dirs") is True
        _check_target(target, Path(os.path.expanduser(destination)), overwrite=p.get("overwrite") is True, make_dirs=make_dirs)
        return export(Path(meta["path"]), target, kind, python(), make_dirs)

    return {"cache_list": lambda p: cache().tracks(), "cache_delete": delete, "cache_clear": clear, "cache_stats": stats, "save": save}


def _destination(destination: object, format: object) -> tuple[Path, str]:
    """The file a save writes and its format; INVALID_PARAMS naming the path when it cannot name a file."""
    if not isinstance(destination, str) or not destination.strip():
        raise LofiError(INVALID_PARAMS, "save needs path: the file to write")
    shown = destination if len(destination) <= 80 else destination[:77] + "…"
    if "\0" in destination:
        raise LofiError(INVALID_PARAMS, f"the path {shown!r} holds a NUL character; name a file")
    try:
        target = Path(destination).expanduser()
    except RuntimeError:  # ~user of a user who does not exist
        raise LofiError(INVALID_PARAMS, f"the path {shown!r} starts with a home folder that does not exist") from None
    kind = str(format or target.suffix.lstrip(".") or "wav").lower()
    if kind not in EXPORT_FORMATS:
        raise LofiError(INVALID_PARAMS, f"format must be one of {', '.join(EXPORT_FORMATS)}, not {kind!r}")
    if not target.name or target.name in (".", "..") or destination.endswith(("/", "\\")) or _is_dir(target):
        raise LofiError(INVALID_PARAMS, f"the path {shown!r} is a folder; name a file in it (like {Path(destination, 'track.' + kind)})")
    if target.suffix.lower() != f".{kind}":
        target = target.with_name(target.name + f".{kind}")
    if len(os.fsencode(target.name)) > NAME_MAX:
        raise LofiError(INVALID_PARAMS, f"the file name of {shown!r} is too long ({len(os.fsencode(target.name))} bytes; at most {NAME_MAX})")
    return target.parent.resolve() / target.name, kind  # the folder's links followed, never the file's own


def _check_target(target: Path, named: Path, overwrite: bool, make_dirs: bool) -> None:
    """WRITE_FAILED, naming the path, for what a careful tool does not do unasked: make folders, write through a
    link, replace a file that is not a regular one, replace an existing file, or write ``x.wav`` beside an existing
    ``x`` the user named (they may have meant ``x`` itself)."""
    try:
        folder = os.stat(target.parent)
    except FileNotFoundError:
        if make_dirs:
            return
        raise LofiError(WRITE_FAILED, f"the folder {target.parent} does not exist; pass make_dirs: true to create it") from None
    except OSError as exc:
        raise LofiError(WRITE_FAILED, f"cannot write {target}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(folder.st_mode):
        raise LofiError(WRITE_FAILED, f"cannot write {target}: {target.parent} is not a folder")
    if named.name != target.name and os.path.lexists(named):
        raise LofiError(WRITE_FAILED, f"{named} exists and lofi would write {target.name} beside it; name the file with its extension")
    try:
        found = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LofiError(WRITE_FAILED, f"cannot write {target}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(found.st_mode):
        raise LofiError(WRITE_FAILED, f"{target} is a symbolic link (to {os.readlink(target)}); lofi never writes through a link: name the file itself")
    if not stat.S_ISREG(found.st_mode):
        raise LofiError(WRITE_FAILED, f"{target} exists and is not a regular file")
    if not overwrite:
        raise LofiError(WRITE_FAILED, f"{target} exists; pass overwrite: true to replace it")


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long, say: not a folder (the name's own check says what is wrong)
        return False


def export(source: Path, target: Path, kind: str, python: str | None, make_dirs: bool) -> dict[str, Any]:
    command = [python or sys.executable, "-m", "lofi_engine.engine.export", str(source), str(target), kind] + (["--make-dirs"] if make_dirs else [])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_SEC, cwd=Path(__file__).resolve().parents[2])
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LofiError(WRITE_FAILED, f"cannot export to {target}: {exc}") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        message = lines[-1] if lines else f"exit code {done.returncode}"
        code, _, text = message.partition(": ")
        raise LofiError(code if code.isupper() else WRITE_FAILED, text or message)
    return {"path": str(target), "format": kind, "size_bytes": target.stat().st_size}
