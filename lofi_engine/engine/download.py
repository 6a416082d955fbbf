"""Fetching a model variant (or EnCodec's weights) from the HuggingFace Hub, only after the user agreed (FR-024…FR-027).

Every file comes from the pinned revision (``catalogue.download_plan``) and is checked before it is used: against the
catalogue's size and sha256 where the pinned record has them, else against the Hub's own metadata (the LFS sha256,
or the git blob hash of a small file, and the announced size). Nothing here touches the network at import: the first
request is the metadata of the first file, made by ``download`` once the user agreed.

Files land in huggingface_hub's cache layout (``HF_HOME``/``HF_HUB_CACHE``: ``blobs/<etag>`` and
``snapshots/<commit>/<path>``; ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are honoured); the engine's variant directory
then links to them under the names the engine loads. A dropped connection is reported as what it is ("connection
lost at N of M bytes"), retried with backoff a bounded number of times, and resumed from the bytes already on disk
(``blobs/<etag>.incomplete``, kept across attempts and across runs); a file of the wrong size or content is deleted,
never loaded.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # read by huggingface_hub at import: it never phones home

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url  # noqa: E402
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError  # noqa: E402
from huggingface_hub.file_download import repo_folder_name  # noqa: E402

from lofi_engine.shared.errors import MODEL_DOWNLOAD_FAILED, LofiError  # noqa: E402
from lofi_engine.store.catalogue import Download, FileCheck  # noqa: E402

ProgressCallback = Callable[[dict], None]
log = logging.getLogger("lofi.engine")

ATTEMPTS = 4
"""Tries per request (metadata or file transfer) before giving up; each retry resumes where the last one stopped."""
BACKOFF_SEC = float(os.environ.get("LOFI_DOWNLOAD_BACKOFF_SEC", "2"))
"""Wait before the first retry, doubled for each next one (2, 4, 8 s). Test/dev hook: LOFI_DOWNLOAD_BACKOFF_SEC."""
CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")

WHAT_TO_DO = "once online, :LofiDownload again; or set model.dir to a folder with the model's files"
"""What a user of the editor (or of `lofi serve`) can do about a failed download; the command line says its own."""


class _Lost(Exception):
    """The connection dropped (or never opened): worth another try. ``cause`` is what a user is told first."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause} ({detail})" if detail else cause)
        self.cause, self.detail = cause, detail


class _Unreachable(_Lost):
    """The Hub could not be connected to at all (no network, DNS, a refused connection)."""


class _GaveUp(Exception):
    """The connection was lost on every attempt: the user has to mend it (the caller says how)."""


class _Corrupt(Exception):
    """The Hub served a complete response that is not the file it announced: not worth another try."""


def download(plan: Download, on_progress: ProgressCallback, what_to_do: str = WHAT_TO_DO) -> Path:
    """Download every file of ``plan`` and assemble its directory; returns that directory. A failure that the user
    can mend ends with ``what_to_do``."""
    if _offline():
        raise LofiError(
            MODEL_DOWNLOAD_FAILED,
            f"HF_HUB_OFFLINE is set, so {plan.description} cannot be downloaded: unset it; {what_to_do}",
        )
    try:
        return _download(plan, on_progress)
    except _GaveUp as exc:  # the cause and what to do first: a shortened line keeps them
        cause, detail = exc.args
        raise LofiError(MODEL_DOWNLOAD_FAILED, f"{cause}: {what_to_do} ({detail})") from None


def _download(download: Download, on_progress: ProgressCallback) -> Path:
    revision = download.revision
    storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=download.repo, repo_type="model")
    plan = []
    for name, repo_path in download.files.items():  # metadata of every file first: the total, and nothing half-done
        # Offline, the first request cannot connect: said at once, not after 14 s of retries. Once the Hub has
        # answered, a lost connection is worth the retries.
        meta = _retrying(
            f"the metadata of {repo_path}", lambda p=repo_path: _metadata(download.repo, p, revision), retry_unreachable=bool(plan)
        )
        plan.append((name, repo_path, meta, _expected(download.check(name), meta, repo_path)))
    total = sum(size for *_, (size, _) in plan)
    done = 0
    reporter = _Reporter(on_progress, total)
    blobs: dict[str, Path] = {}
    for name, repo_path, meta, (size, digest) in plan:
        blob = storage / "blobs" / meta["etag"]
        if not (blob.is_file() and _matches(blob, size, digest) is None):
            _transfer(meta["url"], blob, size, digest, repo_path, lambda got, before=done: reporter(name, before + got))
        _link_snapshot(storage, meta["commit"], revision, repo_path, blob)
        blobs[name] = blob
        done += size
        reporter(name, done, force=True)
    return _assemble(download.target, blobs)


def _offline() -> bool:
    check = getattr(constants, "is_offline_mode", None)
    return bool(check() if callable(check) else constants.HF_HUB_OFFLINE)


def _metadata(repo: str, repo_path: str, revision: str) -> dict:
    """One HEAD request: the blob's etag (its sha256 for LFS files, git blob hash otherwise), size and commit."""
    url = hf_hub_url(repo, repo_path, revision=revision)
    try:
        meta = get_hf_file_metadata(url, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise LofiError(MODEL_DOWNLOAD_FAILED, f"{repo}/{repo_path} is not on the Hub at revision {revision}: {_reason(exc)}") from None
    except Exception as exc:  # no connection, DNS, a proxy, a server error: all worth a retry
        lost = _Unreachable if _cannot_connect(exc) else _Lost
        raise lost("cannot reach the HuggingFace Hub", f"at {constants.ENDPOINT}: {_reason(exc)}") from None
    if not meta.etag:
        raise _Lost(f"the Hub gave no etag for {repo_path}")
    commit = meta.commit_hash or (revision if _COMMIT.match(revision) else None)
    return {"url": url, "etag": meta.etag, "size": meta.size, "commit": commit}


def _expected(check: FileCheck, meta: dict, repo_path: str) -> tuple[int, str | None]:
    """The size and sha256 the file must have: the pinned record's, checked against what the Hub announces."""
    announced = meta["size"]
    if check.size is not None and announced is not None and announced != check.size:
        raise LofiError(
            MODEL_DOWNLOAD_FAILED,
            f"the Hub announces {repo_path} at {announced} bytes, the pinned record says {check.size}: not downloading it",
        )
    if check.sha256 and _SHA256.match(meta["etag"]) and meta["etag"] != check.sha256:
        raise LofiError(MODEL_DOWNLOAD_FAILED, f"the Hub's sha256 of {repo_path} is not the pinned one: not downloading it")
    size = check.size if check.size is not None else announced
    if size is None:
        raise LofiError(MODEL_DOWNLOAD_FAILED, f"the Hub announces no size for {repo_path}")
    return int(size), check.sha256


def _cannot_connect(exc: BaseException) -> bool:
    """No connection could be opened (httpx's ConnectError, requests' ConnectionError, or an OSError such as a
    refused connection or a name that does not resolve), as opposed to one lost or refused by the server."""
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"ConnectError", "ConnectionError", "ConnectTimeout"}) or isinstance(exc, OSError)


def _retrying(what: str, attempt_once: Callable, retry_unreachable: bool = True):
    """Run ``attempt_once`` up to ATTEMPTS times, waiting BACKOFF_SEC, then twice as long, … after each _Lost; an
    _Unreachable is given up at once unless ``retry_unreachable``."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return attempt_once()
        except _Lost as exc:
            if isinstance(exc, _Unreachable) and not retry_unreachable:
                raise _GaveUp(exc.cause, exc.detail) from None
            if attempt == ATTEMPTS:
                raise _GaveUp(exc.cause, f"{exc.detail + '; ' if exc.detail else ''}{ATTEMPTS} tries") from None
            delay = BACKOFF_SEC * 2 ** (attempt - 1)
            log.warning("%s (%s); retrying in %g s (attempt %d of %d)", exc, what, delay, attempt + 1, ATTEMPTS)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _transfer(url: str, blob: Path, size: int, digest: str | None, repo_path: str, on_bytes: Callable[[int], None]) -> None:
    """Fetch one file into ``blob`` through ``<blob>.incomplete``, resuming from what that already holds."""
    blob.parent.mkdir(parents=True, exist_ok=True)
    partial = blob.with_name(blob.name + ".incomplete")

    def once() -> None:
        try:
            _get(url, partial, size, on_bytes)
        except _Corrupt as exc:
            partial.unlink(missing_ok=True)
            raise LofiError(MODEL_DOWNLOAD_FAILED, f"the download of {repo_path} is corrupt ({exc}); it was deleted, try again") from None
        except _Lost as exc:
            got = partial.stat().st_size if partial.exists() else 0
            raise _Lost(f"connection lost at {got} of {size} bytes of {repo_path} ({exc})") from None

    _retrying(repo_path, once)
    problem = _matches(partial, size, digest)
    if problem:
        partial.unlink(missing_ok=True)
        raise LofiError(MODEL_DOWNLOAD_FAILED, f"the download of {repo_path} is corrupt ({problem}); it was deleted, try again")
    os.replace(partial, blob)


def _get(url: str, partial: Path, size: int, on_bytes: Callable[[int], None]) -> None:
    """One ranged GET from the end of ``partial``: _Lost when the connection fails, _Corrupt when the Hub's file is
    not as long as announced."""
    have = partial.stat().st_size if partial.exists() else 0
    if have > size:
        partial.unlink()
        have = 0
    if have == size:
        return
    request = urllib.request.Request(url, headers={"User-Agent": "lofi.nvim", **({"Range": f"bytes={have}-"} if have else {})})
    try:
        response = urllib.request.urlopen(request, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:
            raise _Corrupt(f"the Hub's file ends before byte {have} of {size}") from None
        if exc.code in (408, 429) or exc.code >= 500:
            raise _Lost(f"HTTP {exc.code}") from None
        raise LofiError(MODEL_DOWNLOAD_FAILED, f"the Hub refused {url}: HTTP {exc.code} {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Lost(_reason(exc)) from None
    with response, open(partial, "r+b" if have else "wb") as out:
        if have and response.status != 206:  # the server ignored the range: start over
            out.truncate(0)
            have = 0
        out.seek(have)
        got = have
        length = response.headers.get("Content-Length")
        announced_end = have + int(length) if length and length.isdigit() else None
        try:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except http.client.IncompleteRead as exc:
                    out.write(exc.partial)
                    got += len(exc.partial)
                    raise
                if not chunk:
                    break
                out.write(chunk)
                got += len(chunk)
                on_bytes(got)
        except (OSError, http.client.HTTPException) as exc:
            raise _Lost(_reason(exc)) from None
        if announced_end is not None and got < announced_end:  # the body stopped short of its Content-Length
            raise _Lost("the connection closed mid-file")
    if got < size:
        raise _Corrupt(f"{got} bytes instead of {size}")


def _matches(path: Path, size: int, digest: str | None) -> str | None:
    """None when ``path`` is the file; else what is wrong. The content is checked against ``digest`` (pinned), else
    against the blob's own name where the Hub names it by a hash (sha256 for LFS files, git blob sha1 otherwise)."""
    actual = path.stat().st_size
    if actual != size:
        return f"{actual} bytes instead of {size}"
    etag = path.name.split(".")[0]
    if digest or _SHA256.match(etag):
        if _hash(path, hashlib.sha256()) != (digest or etag):
            return "its sha256 does not match " + ("the pinned one" if digest else "the Hub's")
    elif _GIT_SHA1.match(etag):
        if _hash(path, hashlib.sha1(f"blob {actual}\0".encode())) != etag:
            return "its git hash does not match the Hub's"
    return None


def _hash(path: Path, digest) -> str:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _link_snapshot(storage: Path, commit: str | None, revision: str, repo_path: str, blob: Path) -> None:
    """huggingface_hub's own view of the file (``snapshots/<commit>/<path>``, ``refs/<branch>``), so its tools see it."""
    if not commit:
        return
    pointer = storage / "snapshots" / commit / repo_path
    try:
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if not pointer.exists():
            pointer.unlink(missing_ok=True)
            os.symlink(os.path.relpath(blob, pointer.parent), pointer)
        if revision != commit:
            (storage / "refs").mkdir(exist_ok=True)
            (storage / "refs" / revision).write_text(commit)
    except OSError as exc:  # no symlinks here: the variant directory copies the blob instead
        log.info("no snapshot link for %s: %s", repo_path, exc)


def forget_file(path: Path) -> None:
    """Delete a cached file and the blob behind it, so the next download fetches it again."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


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


class _Reporter:
    """download_progress at each whole percent (and at the end of each file), never going backwards."""

    def __init__(self, on_progress: ProgressCallback, total: int) -> None:
        self.on_progress = on_progress
        self.total = total
        self.reported = -1
        self.percent = -1

    def __call__(self, name: str, now: int, force: bool = False) -> None:
        percent = _percent(now, self.total)
        if now <= self.reported or (percent == self.percent and not force):
            return
        self.reported, self.percent = now, percent
        self.on_progress({"file": name, "bytes_downloaded": now, "bytes_total": self.total, "percent": percent})


def _percent(done: int, total: int) -> int:
    return 100 * done // total if total else 100


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
