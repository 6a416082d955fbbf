"""ONNX Runtime's optimized graphs and prepacked weights, kept on disk so that later loads skip that work.

On the CPU, most of a session's load time goes to graph optimization and to repacking every MatMul weight into
the layout its kernels read. The first load saves the result (graph plus prepacked weights as external data);
later loads open that with optimization off: for the fp32 decoder, load time halves and the weights are held
once instead of twice. An entry is keyed by the source file, ONNX Runtime's version and the CPU, written under a
temp name and renamed into place; one that fails to load is deleted and rebuilt. A copy that cannot be saved
(disk full, read-only directory) is skipped with a warning: the original is loaded as it is.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import onnxruntime as ort

from lofi_engine.inference.providers import CPU, session_options
from lofi_engine.inference.session import open_session
from lofi_engine.shared.errors import LofiError

MODEL = "model.onnx"
WEIGHTS = "model.onnx.data"
SOURCE = "source.txt"
log = logging.getLogger("lofi.engine")


def open_optimized(
    path: Path, threads: int | None, providers: list[str], required_inputs: tuple[str, ...], cache_dir: Path | None,
    arena: bool = True,
) -> ort.InferenceSession:
    """A session over ``path``, through the on-disk cache when there is one and the session runs on the CPU
    (``arena``: see :func:`session_options`)."""
    if cache_dir is None or providers != [CPU]:
        return open_session(path, session_options(threads, arena), providers, required_inputs)
    entry = cache_dir / _fingerprint(path)
    if (entry / MODEL).is_file():
        options = session_options(threads, arena)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return open_session(entry / MODEL, options, providers, required_inputs)
        except LofiError as exc:
            log.warning("dropping the optimized copy of %s: %s", path, exc.message)
            shutil.rmtree(entry, ignore_errors=True)
    return _build(path, entry, threads, providers, required_inputs, arena=arena)


def open_derived(
    name: str,
    sources: list[Path],
    tag: str,
    derive: Callable[[Path], dict[str, Path]],
    threads: int | None,
    providers: list[str],
    required_inputs: dict[str, tuple[str, ...]],
    cache_dir: Path | None,
) -> dict[str, ort.InferenceSession]:
    """Sessions over graphs derived from ``sources`` (``derive(directory)`` writes them there and returns their
    paths by key), built once and kept optimized in ``cache_dir`` under ``name``, keyed like :func:`open_optimized`
    by the sources, ONNX Runtime's version and the CPU, plus ``tag`` (the derivation's version). A cached entry that
    fails to load is deleted and rebuilt. Whatever ``derive`` raises propagates (the caller falls back)."""
    use_cache = cache_dir is not None and providers == [CPU]
    entries = {}
    if use_cache:
        assert cache_dir is not None
        key = hashlib.sha256("|".join([tag, *(_fingerprint(s) for s in sources)]).encode()).hexdigest()[:16]
        entries = {k: cache_dir / f"{name}-{k}-{key}" for k in required_inputs}
        if all((e / MODEL).is_file() for e in entries.values()):
            options = session_options(threads)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                return {k: open_session(e / MODEL, options, providers, required_inputs[k]) for k, e in entries.items()}
            except LofiError as exc:
                log.warning("dropping the cached %s graphs of %s: %s", name, sources[0], exc.message)
                for e in entries.values():
                    shutil.rmtree(e, ignore_errors=True)
    work_parent = None
    if use_cache:
        assert cache_dir is not None
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryDirectory(dir=cache_dir).cleanup()
            work_parent = cache_dir
        except OSError as exc:  # read-only or full: build in the system's temp directory, keep nothing
            log.warning("not keeping the %s graphs of %s: cannot write to %s (%s)", name, sources[0].name, cache_dir, exc.strerror or exc)
            use_cache = False
    with tempfile.TemporaryDirectory(prefix=f".{name}-build.", dir=work_parent) as work:
        paths = derive(Path(work))
        if not use_cache:
            return {k: open_session(p, session_options(threads), providers, required_inputs[k]) for k, p in paths.items()}
        return {
            k: _build(p, entries[k], threads, providers, required_inputs[k], source=sources[0], stem=f"{name}-{k}")
            for k, p in paths.items()
        }


def _build(
    path: Path, entry: Path, threads: int | None, providers: list[str], required_inputs: tuple[str, ...],
    source: Path | None = None, stem: str | None = None, arena: bool = True,
) -> ort.InferenceSession:
    """Open ``path`` while ONNX Runtime saves its optimized copy into ``entry``.

    Saving the copy can fail where loading cannot (disk full, read-only or missing cache directory), and ONNX
    Runtime reports both the same way: then the original is opened again without saving, and only if that fails
    too is the file itself at fault (MODEL_LOAD_FAILED naming it). A cache never costs a user a good model."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    except OSError as exc:
        log.warning("not keeping an optimized copy of %s: cannot write to %s (%s)", path.name, entry.parent, exc.strerror or exc)
        return open_session(path, session_options(threads, arena), providers, required_inputs)
    options = session_options(threads, arena)
    options.optimized_model_filepath = str(staging / MODEL)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", WEIGHTS)
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    options.add_session_config_entry("session.save_external_prepacked_constant_initializers", "1")
    try:
        try:
            session = open_session(path, options, providers, required_inputs)
        except LofiError as saving:
            shutil.rmtree(staging, ignore_errors=True)  # free what a full disk holds before the second try
            session = open_session(path, session_options(threads, arena), providers, required_inputs)  # the original's verdict
            reason = saving.__context__ or saving  # ONNX Runtime's own words (the LofiError blames the model)
            log.warning(
                "not keeping an optimized copy of %s: saving it to %s failed (%s); loaded the original without it",
                path.name, entry.parent, str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__,
            )
            return session
        try:
            if (staging / MODEL).is_file():
                (staging / SOURCE).write_text(str((source or path).resolve()), encoding="utf-8")
                _drop_outdated(entry, source or path, stem or (source or path).stem)
                staging.rename(entry)
        except OSError as exc:  # another editor built it first, or the disk is full: the session works either way
            log.info("optimized copy of %s not kept: %s", path.name, exc.strerror or exc)
        return session
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _drop_outdated(entry: Path, path: Path, stem: str) -> None:
    """Copies made from an earlier version of the same source file."""
    for other in entry.parent.glob(f"{stem}-*"):
        try:
            if other != entry and (other / SOURCE).read_text(encoding="utf-8") == str(path.resolve()):
                shutil.rmtree(other, ignore_errors=True)
        except OSError:
            pass


def _fingerprint(path: Path) -> str:
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{ort.__version__}:{platform.machine()}:{_cpu_flags()}"
    return f"{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _cpu_flags() -> str:
    """Prepacked layouts depend on the instruction set: an entry is only reused on the same kind of CPU."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()
