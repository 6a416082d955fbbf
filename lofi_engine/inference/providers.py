"""Mapping the user's device choice onto ONNX Runtime execution providers and session options."""

from __future__ import annotations

import os

import onnxruntime as ort

from lofi_engine.shared.errors import DEVICE_UNAVAILABLE, LofiError
from lofi_engine.shared.settings import DEVICES

_GPU_PROVIDERS = {
    "cuda": ("CUDAExecutionProvider", "onnxruntime-gpu (pip install onnxruntime-gpu) with a CUDA GPU"),
    "metal": ("CoreMLExecutionProvider", "onnxruntime for macOS (pip install onnxruntime) on Apple hardware"),
}
CPU = "CPUExecutionProvider"
CUDA = _GPU_PROVIDERS["cuda"][0]


def providers_for(device: str) -> list[str]:
    """Execution providers for ``device``, best first; "auto" prefers a GPU and falls back to the CPU."""
    available = ort.get_available_providers()
    if device == "cpu":
        return [CPU]
    if device == "auto":
        gpus = [name for name, _ in _GPU_PROVIDERS.values() if name in available]
        return gpus[:1] + [CPU]
    if device not in _GPU_PROVIDERS:
        raise LofiError(DEVICE_UNAVAILABLE, f"unknown device {device!r}: expected one of {', '.join(DEVICES)}")
    provider, package = _GPU_PROVIDERS[device]
    if provider not in available:
        raise LofiError(
            DEVICE_UNAVAILABLE,
            f"device {device!r} needs ONNX Runtime's {provider}, which this installation lacks "
            f"(it has {', '.join(available)}); it comes with {package}",
        )
    return [provider, CPU]


def default_threads() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def session_options(threads: int | None, arena: bool = True) -> ort.SessionOptions:
    """``arena=False`` for sessions run now and then on large activations (EnCodec): their memory goes back after
    each run instead of staying with ONNX Runtime's arena at its largest."""
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = arena
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return options
