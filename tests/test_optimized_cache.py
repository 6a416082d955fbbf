"""ONNX Runtime's optimized models kept on disk (issue 5, faster loads): same output, self-healing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import PROMPT, TINY, reference

from lofi_engine import MusicGen


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if not p.name.startswith("."))


def test_second_load_uses_the_optimized_copy_with_identical_output(tmp_path: Path) -> None:
    cache = tmp_path / "optimized"
    first = MusicGen.load(TINY, device="cpu", optimized_cache=cache)
    built = entries(cache)
    # The decoder is kept as the in-place graphs derived from it (issue 14): its step and its cross-attention part.
    assert [p.name.split("-")[0] for p in built] == ["encodec_decode", "inplace", "inplace", "text_encoder"]
    assert all((p / "model.onnx").is_file() and (p / "model.onnx.data").is_file() for p in built)
    second = MusicGen.load(TINY, device="cpu", optimized_cache=cache)
    assert entries(cache) == built
    for model in (first, second):
        out = model.generate(PROMPT, duration_sec=5, top_k=1, guidance_scale=3.0)
        np.testing.assert_array_equal(out.codes, reference("greedy_g3_codes"))
        np.testing.assert_allclose(out.audio, reference("greedy_g3_audio"), atol=1e-4, rtol=0)


def test_a_damaged_copy_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "optimized"
    MusicGen.load(TINY, device="cpu", optimized_cache=cache)
    decoder_entry = next(p for p in entries(cache) if p.name.startswith("inplace-step"))
    (decoder_entry / "model.onnx").write_bytes(b"not a model")
    model = MusicGen.load(TINY, device="cpu", optimized_cache=cache)
    np.testing.assert_array_equal(model.generate(PROMPT, duration_sec=5, top_k=1).codes, reference("greedy_g3_codes"))
    assert (decoder_entry / "model.onnx").stat().st_size > 100


def test_a_changed_source_file_replaces_its_copy(tmp_path: Path, tiny_copy: Path) -> None:
    cache = tmp_path / "optimized"
    MusicGen.load(tiny_copy, device="cpu", optimized_cache=cache)
    before = entries(cache)
    (tiny_copy / "encodec_decode.onnx").write_bytes((TINY / "encodec_decode.onnx").read_bytes())  # new mtime
    MusicGen.load(tiny_copy, device="cpu", optimized_cache=cache)
    after = entries(cache)
    assert len(after) == len(before) == 4
    assert [p for p in after if p.name.startswith("encodec")] != [p for p in before if p.name.startswith("encodec")]
