"""Loading a backend's model from the configured files: the one path the engine process and the CLI both take.

MusicGen is read from ``model_dir`` or the downloaded variant (MODEL_NOT_FOUND when it is neither: downloading is
the service's or the CLI's decision, made before a job gets here); ACE-Step from its export. A downloaded file
that does not load is deleted, so the next download fetches it again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from lofi_engine.ace_step.pipeline import AceStep
from lofi_engine.engine.download import forget_file
from lofi_engine.musicgen.encodec_encoder import EncodecEncoder
from lofi_engine.musicgen.model import MusicGen
from lofi_engine.shared.backend import Backend
from lofi_engine.shared.errors import MODEL_LOAD_FAILED, MODEL_NOT_FOUND, LofiError
from lofi_engine.shared.settings import EngineConfig
from lofi_engine.store.catalogue import ENCODEC, encodec_location, locate_model

LoadCallback = Callable[[str, int, int], None]
"""``(file, bytes_done, bytes_total)`` while files are opened (or, for ACE-Step's check, hashed)."""
log = logging.getLogger("lofi.engine")


def load_backend(
    config: EngineConfig,
    backend: str,
    model_version: str,
    on_load: LoadCallback | None = None,
    on_verify: LoadCallback | None = None,
    encodec_dir: Path | None = None,
) -> Backend:
    """The backend's model; ``encodec_dir`` (MusicGen): EnCodec's weights, loaded now (else, for the engine's
    jobs, at the first one that continues audio: :func:`attach_encoder`)."""
    started = time.perf_counter()
    if backend == "ace-step":
        model: Backend = AceStep.load(
            config.ace_step_dir, variant=config.ace_step_variant, device=config.device, threads=config.threads,
            model_version=model_version, on_progress=on_load, on_verify=on_verify,
        )
        source = config.ace_step_dir
    else:
        source = locate_model(config)
        try:
            model = MusicGen.load(
                source, device=config.device, threads=config.threads, decoder=config.decoder, model_version=model_version,
                on_progress=on_load, optimized_cache=config.optimized_dir,
                quantize="int4" if config.variant == "small-int4" and config.model_dir is None else None, encodec_dir=encodec_dir,
            )
        except LofiError as exc:
            if exc.code == MODEL_LOAD_FAILED and exc.path is not None and config.model_dir is None:
                _forget_broken_download(exc)
            raise
    log.info("%s loaded from %s in %.1f s", backend, source, time.perf_counter() - started)
    return model


def attach_encoder(model: MusicGen, config: EngineConfig) -> None:
    """EnCodec's encoder, for a job that continues audio: from the ``encodec_dir`` setting or the downloaded weights
    (the service asks for that download before the job comes here), derived and loaded once."""
    if model.audio_encoder is not None:
        return
    where = encodec_location(config)
    if where is None:
        raise LofiError(MODEL_NOT_FOUND, f"continuing audio needs EnCodec's weights: set encodec_dir, or agree to download them ({ENCODEC})")
    model.audio_encoder = EncodecEncoder.load(where, config.optimized_dir, config.threads)


def _forget_broken_download(exc: LofiError) -> None:
    """The one downloaded file that failed to load (never a cache that could not be saved) is deleted, so the next
    request downloads it again."""
    assert exc.path is not None
    forget_file(Path(exc.path))
    exc.message += f"; {Path(exc.path).name} was deleted and will be downloaded again on the next request"
