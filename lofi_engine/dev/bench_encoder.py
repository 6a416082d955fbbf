"""The EnCodec encoder at full size (issue 21): facebook/encodec_32khz's configuration with random weights (codebooks
drawn at random too, transformers leaves them at zero), saved the way that Hub repository holds them (weight norm as
``weight_g`` / ``weight_v``), derived by the engine, timed on 10 s of audio against transformers' own
``EncodecModel.encode`` on the same weights, in the same run, and its codes compared with transformers'."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ENCODEC_32KHZ = {
    "audio_channels": 1, "chunk_length_s": None, "codebook_dim": 128, "codebook_size": 2048, "compress": 2,
    "dilation_growth_rate": 2, "hidden_size": 128, "kernel_size": 7, "last_kernel_size": 7, "norm_type": "weight_norm",
    "normalize": False, "num_filters": 64, "num_lstm_layers": 2, "num_residual_layers": 1, "overlap": None,
    "pad_mode": "reflect", "residual_kernel_size": 3, "sampling_rate": 32000, "target_bandwidths": [2.2],
    "trim_right_ratio": 1.0, "upsampling_ratios": [8, 5, 4, 4], "use_causal_conv": False, "use_conv_shortcut": False,
}
"""The published config.json of facebook/encodec_32khz (what MusicGen-small's audio tokenizer is)."""


def write_random_encodec(folder: Path, seed: int = 0) -> Any:
    """A random EnCodec of encodec_32khz's shape in ``folder`` (config.json + model.safetensors, as the Hub repo lays
    them out); returns transformers' model of those weights."""
    import torch
    from safetensors.torch import save_file
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(seed)
    model = EncodecModel(EncodecConfig(**ENCODEC_32KHZ)).eval()
    with torch.no_grad():
        for layer in model.quantizer.layers:
            layer.codebook.embed.copy_(torch.randn(layer.codebook.embed.shape))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**ENCODEC_32KHZ, "model_type": "encodec", "architectures": ["EncodecModel"]}))
    state = {}
    for name, value in model.state_dict().items():  # the Hub file's naming of weight norm
        name = name.replace(".parametrizations.weight.original0", ".weight_g").replace(".parametrizations.weight.original1", ".weight_v")
        state[name] = value.contiguous()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return model


def measure_encoder(threads: int, seconds: float = 10.0, runs: int = 3) -> dict[str, Any]:
    import torch

    from lofi_engine.musicgen.encodec_encoder import EncodecEncoder

    torch.set_num_threads(threads)
    audio = (0.3 * np.random.default_rng(0).standard_normal(int(seconds * 32000))).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="lofi-encodec-") as work:
        folder = Path(work) / "encodec_32khz"
        model = write_random_encodec(folder)
        started = time.perf_counter()
        encoder = EncodecEncoder.load(folder, cache_dir=Path(work) / "optimized", threads=threads)
        derive_sec = time.perf_counter() - started
        ours, codes = [], None
        for _ in range(runs):
            started = time.perf_counter()
            codes = encoder.encode(audio)
            ours.append(time.perf_counter() - started)
    theirs = []
    with torch.no_grad():
        for _ in range(runs):
            started = time.perf_counter()
            expected = model.encode(torch.from_numpy(audio)[None, None], bandwidth=2.2).audio_codes[0, 0].numpy()
            theirs.append(time.perf_counter() - started)
    assert codes is not None
    return {
        "audio_sec": seconds, "derive_and_load_sec": derive_sec, "encode_sec": statistics.median(ours),
        "transformers_encode_sec": statistics.median(theirs), "codes_equal": bool(np.array_equal(codes, expected)),
        "codes_differing": int((codes != expected).sum()), "codes": int(codes.size),
    }
