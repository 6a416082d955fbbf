"""Fetching a model variant from the HuggingFace Hub with huggingface_hub, only after the user agreed (FR-024…FR-027).

Files land in huggingface_hub's own cache (``HF_HOME``/``HF_HUB_CACHE``; ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``
are honoured); the engine's variant directory then links to them under the names the engine loads. A dropped
connection is resumed where it stopped; a file of the wrong size or content is deleted, never loaded.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import disable_progress_bars

from lofi_engine.shared.errors import MODEL_DOWNLOAD_FAILED, LofiError
from lofi_engine.shared.settings import EngineConfig
from lofi_engine.store.catalogue import HUB_REPO, HUB_REVISION, VARIANTS, variant_dir

ProgressCallback = Callable[[dict], None]
ATTEMPTS = 3
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


disable_progress_bars()  # progress goes to the client as events, not to the engine's log


def remote_sizes(variant: str) -> dict[str, int]:
    """Bytes of each of the variant's files on the Hub (one HEAD request per file)."""
    sizes = {}
    for name, repo_path in VARIANTS[variant].files.items():
        try:
            meta = get_hf_file_metadata(hf_hub_url(HUB_REPO, repo_path, revision=HUB_REVISION))
        except (OfflineModeIsEnabled, LocalEntryNotFoundError):
            raise LofiError(MODEL_DOWNLOAD_FAILED, "HF_HUB_OFFLINE is set and the model is not downloaded yet") from None
        except Exception as exc:
            raise LofiError(MODEL_DOWNLOAD_FAILED, f"cannot reach the HuggingFace Hub for {repo_path}: {_reason(exc)}") from None
        sizes[name] = int(meta.size or 0)
    return sizes


def download_variant(config: EngineConfig, on_progress: ProgressCallback) -> Path:
    """Download every file of ``config.variant`` and assemble its directory; returns that directory."""
    sizes = remote_sizes(config.variant)
    total = sum(sizes.values())
    done = reported = 0
    blobs: dict[str, Path] = {}
    for name, repo_path in VARIANTS[config.variant].files.items():

        def partial(size: int, name: str = name, before: int = done) -> None:
            nonlocal reported
            now = before + min(size, sizes[name])
            if now > reported:  # a retry may restart a partial file: never report going backwards
                reported = now
                on_progress({"file": name, "bytes_downloaded": now, "bytes_total": total, "percent": _percent(now, total)})

        with _PartialFileWatcher(partial) as watcher:
            path = _fetch(repo_path, watcher.blobs)
        _verify(path, sizes[name], repo_path)
        blobs[name] = path
        done = reported = done + sizes[name]
        on_progress({"file": name, "bytes_downloaded": done, "bytes_total": total, "percent": _percent(done, total)})
    return _assemble(variant_dir(config), blobs)


def _fetch(repo_path: str, blobs: Path) -> Path:
    """One file into huggingface_hub's cache; a dropped connection is retried from where it stopped."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return Path(hf_hub_download(HUB_REPO, repo_path, revision=HUB_REVISION))
        except (OfflineModeIsEnabled, LocalEntryNotFoundError):
            raise LofiError(MODEL_DOWNLOAD_FAILED, "HF_HUB_OFFLINE is set and the model is not downloaded yet") from None
        except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as exc:
            raise LofiError(MODEL_DOWNLOAD_FAILED, f"{repo_path} is not on the Hub: {_reason(exc)}") from None
        except Exception as exc:
            if attempt == ATTEMPTS:
                for part in blobs.glob("*.incomplete"):  # it did not converge: start afresh next time
                    part.unlink(missing_ok=True)
                raise LofiError(MODEL_DOWNLOAD_FAILED, f"downloading {repo_path} failed: {_reason(exc)}") from None
            time.sleep(attempt)
    raise AssertionError("unreachable")


def forget_file(path: Path) -> None:
    """Delete a cached file and the blob behind it, so the next download fetches it again."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def _verify(path: Path, size: int, repo_path: str) -> None:
    """Size always; content too where the Hub names the blob by its sha256 (every large LFS file)."""
    blob = path.resolve()
    actual = blob.stat().st_size
    problem = None
    if size and actual != size:
        problem = f"{actual} bytes instead of {size}"
    elif _SHA256.match(blob.name):
        digest = hashlib.sha256()
        with open(blob, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
        if digest.hexdigest() != blob.name:
            problem = "its sha256 does not match the Hub's"
    if problem:
        forget_file(path)
        raise LofiError(MODEL_DOWNLOAD_FAILED, f"the download of {repo_path} is corrupt ({problem}); it was deleted, try again")


def _assemble(target: Path, blobs: dict[str, Path]) -> Path:
    """Links (or copies, where links are not allowed) named as the engine expects, renamed into place at once."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    for name, path in blobs.items():
        try:
            os.symlink(path.resolve(), staging / name)
        except OSError:
            shutil.copyfile(path, staging / name)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target


class _PartialFileWatcher:
    """Reports bytes as huggingface_hub writes them, by watching its partial files (any hub version writes
    ``blobs/<etag>[.<tag>].incomplete`` in the repo's cache folder, and none offers a progress callback to all)."""

    def __init__(self, on_bytes: Callable[[int], None], interval: float = 0.25) -> None:
        self.on_bytes = on_bytes
        self.interval = interval
        self.blobs = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=HUB_REPO, repo_type="model") / "blobs"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "_PartialFileWatcher":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _watch(self) -> None:
        last = -1
        while not self.stop.wait(self.interval):
            size = 0
            for part in self.blobs.glob("*.incomplete"):
                try:
                    size += part.stat().st_size
                except OSError:
                    pass
            if size != last:
                last = size
                self.on_bytes(size)


def _percent(done: int, total: int) -> int:
    return 100 * done // total if total else 100


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
