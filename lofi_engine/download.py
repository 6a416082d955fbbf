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
from pathlib import Path
from typing import Callable

from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
from tqdm.auto import tqdm

from .config import EngineConfig
from .errors import MODEL_DOWNLOAD_FAILED, LofiError
from .models import HUB_REPO, HUB_REVISION, VARIANT_FILES, variant_dir

ProgressCallback = Callable[[dict], None]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def remote_sizes(variant: str) -> dict[str, int]:
    """Bytes of each of the variant's files on the Hub (one HEAD request per file)."""
    sizes = {}
    for name, repo_path in VARIANT_FILES[variant].items():
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
    done = 0
    blobs: dict[str, Path] = {}
    for name, repo_path in VARIANT_FILES[config.variant].items():
        reporter = _reporter(on_progress, name, done, total)
        try:
            path = Path(hf_hub_download(HUB_REPO, repo_path, revision=HUB_REVISION, tqdm_class=reporter))
        except (OfflineModeIsEnabled, LocalEntryNotFoundError):
            raise LofiError(MODEL_DOWNLOAD_FAILED, "HF_HUB_OFFLINE is set and the model is not downloaded yet") from None
        except Exception as exc:
            raise LofiError(MODEL_DOWNLOAD_FAILED, f"downloading {repo_path} failed: {_reason(exc)}") from None
        _verify(path, sizes[name], repo_path)
        blobs[name] = path
        done += sizes[name]
        on_progress({"file": name, "bytes_downloaded": done, "bytes_total": total, "percent": _percent(done, total)})
    return _assemble(variant_dir(config), blobs)


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


def _reporter(on_progress: ProgressCallback, name: str, before: int, total: int) -> type:
    """A tqdm class huggingface_hub drives; it forwards byte counts as `download_progress` payloads."""

    class Reporter(tqdm):
        def __init__(self, *args, **kwargs) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self.bytes_done = int(kwargs.get("initial") or 0)
            self.last_percent = -1

        def update(self, n: float | None = 1) -> bool | None:
            self.bytes_done += int(n or 0)
            percent = _percent(before + self.bytes_done, total)
            if percent != self.last_percent:
                self.last_percent = percent
                on_progress({"file": name, "bytes_downloaded": before + self.bytes_done, "bytes_total": total, "percent": percent})
            return super().update(n)

    return Reporter


def _percent(done: int, total: int) -> int:
    return 100 * done // total if total else 100


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
