"""Opening ONNX files and running them, with every failure turned into the spec's error codes."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import onnxruntime as ort

from lofi_engine.shared.errors import (
    MODEL_INFERENCE_FAILED,
    MODEL_LOAD_FAILED,
    LofiError,
)


def open_session(
    path: Path, options: ort.SessionOptions, providers: list[str], required_inputs: tuple[str, ...]
) -> ort.InferenceSession:
    """An inference session over ``path``; a corrupt, truncated or foreign file is MODEL_LOAD_FAILED with
    ``LofiError.path`` = ``path`` (out of memory is MODEL_LOAD_FAILED with no path: the file is not at fault).

    With ``options.optimized_model_filepath`` set, ONNX Runtime also saves the optimized graph while it loads, and a
    failure to save (disk full) looks the same as a failure to load: the caller that sets it
    (:mod:`lofi_engine.inference.optimized_graphs`) opens the original again without saving before blaming the file.
    """
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except MemoryError:
        raise LofiError(MODEL_LOAD_FAILED, f"out of memory while loading {path}") from None
    except Exception as exc:  # ONNX Runtime raises its own exception types for every parse/validation failure
        raise LofiError(
            MODEL_LOAD_FAILED, f"cannot load {path} (corrupt, truncated or not an ONNX model): {_first_line(exc)}", path=path
        ) from None
    names = {i.name for i in session.get_inputs()}
    missing = [name for name in required_inputs if name not in names]
    if missing:
        raise LofiError(MODEL_LOAD_FAILED, f"{path} is not the expected model: it has no input {', '.join(missing)}", path=path)
    return session


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def float_type(session: ort.InferenceSession, input_name: str) -> type[np.floating]:
    """The numpy float type a graph takes for ``input_name`` (fp16 files take float16)."""
    kind = next(i.type for i in session.get_inputs() if i.name == input_name)
    return np.float16 if kind == "tensor(float16)" else np.float32


def run(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray], what: str, options: ort.RunOptions | None = None
) -> list[np.ndarray]:
    """``session.run`` with ONNX Runtime failures reported as MODEL_INFERENCE_FAILED."""
    with _inference_errors(what):
        return session.run(None, feeds, options)


def run_bound(session: ort.InferenceSession, binding: ort.IOBinding, what: str) -> list[ort.OrtValue]:
    """``run_with_iobinding``, failures reported as MODEL_INFERENCE_FAILED; returns the outputs as OrtValues."""
    with _inference_errors(what):
        session.run_with_iobinding(binding)
        return binding.get_outputs()


@contextmanager
def _inference_errors(what: str) -> Iterator[None]:
    try:
        yield
    except MemoryError:
        raise LofiError(MODEL_INFERENCE_FAILED, f"out of memory in the {what}") from None
    except LofiError:
        raise
    except Exception as exc:  # ONNX Runtime's own exception types
        raise LofiError(MODEL_INFERENCE_FAILED, f"the {what} failed: {_first_line(exc)}") from None


def is_int8(path: Path, head_bytes: int = 32 << 20) -> bool:
    """Whether a graph was dynamically quantized to int8.

    Protobuf writes a graph's nodes before its weights, so the operator names are near the start of the file.
    """
    with open(path, "rb") as f:
        head = f.read(head_bytes)
    return b"MatMulInteger" in head or b"DynamicQuantizeLinear" in head
