"""SC-001 / issue 2: our ONNX Runtime pipeline reproduces transformers' MusicgenForConditionalGeneration.generate."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PROMPT, TINY, TINY_FP16, TINY_INT8, reference

from lofi_engine import MusicGen
from lofi_engine.musicgen.sampling import TokenSampler
from lofi_engine.musicgen.text import encode_prompt
from lofi_engine.musicgen.windows import Window


@pytest.mark.parametrize("decoder", ["merged", "split"])
@pytest.mark.parametrize("guidance", [3.0, 1.0])
def test_greedy_codes_and_audio_match_transformers(decoder: str, guidance: float) -> None:
    model = MusicGen.load(TINY, device="cpu", decoder=decoder)
    assert model.decoder.merged == (decoder == "merged")
    out = model.generate(PROMPT, duration_sec=5, top_k=1, guidance_scale=guidance)
    expected_codes = reference(f"greedy_g{guidance:g}_codes")
    assert out.codes.dtype == np.int64
    assert out.codes.shape == expected_codes.shape == (4, 250)
    np.testing.assert_array_equal(out.codes, expected_codes)
    expected_audio = reference(f"greedy_g{guidance:g}_audio")
    assert out.audio.dtype == np.float32 and out.audio.shape == expected_audio.shape == (5 * 32000,)
    np.testing.assert_allclose(out.audio, expected_audio, atol=1e-4, rtol=0)
    assert np.abs(out.audio).max() > 1e-3, "audio must depend on the codes (non-zero codebooks)"


def test_continuation_from_codes_matches_transformers(tiny: MusicGen) -> None:
    """The windowed continuation equals transformers' generate(decoder_input_ids=…) token for token."""
    prompt_codes = reference("greedy_g1_codes")[:, :50]
    hidden, mask = encode_prompt(tiny.tokenizer, tiny.text_encoder, PROMPT, guidance=False)
    sampler = TokenSampler(np.random.default_rng(0), top_k=1, temperature=1.0, guidance_scale=1.0)
    composition = tiny.compose([Window(50, 100, 103)], hidden, mask, sampler, context=prompt_codes)
    steps = list(composition)
    codes = composition.codes
    np.testing.assert_array_equal(codes, reference("continuation_g1_codes"))
    np.testing.assert_array_equal(codes[:, :50], prompt_codes)
    assert len(steps) == 103


@pytest.mark.parametrize(
    ("model_dir", "precision", "merged"), [(TINY_FP16, "fp16", False), (TINY_INT8, "int8", True), (TINY, "fp32", True)]
)
def test_every_published_precision_loads_and_generates(model_dir, precision: str, merged: bool) -> None:
    model = MusicGen.load(model_dir, device="cpu")
    assert model.model_version.endswith(f"-{precision}-v1")
    assert model.decoder.merged is merged
    assert model.decoder.dtype == (np.float16 if precision == "fp16" else np.float32)
    out = model.generate(PROMPT, duration_sec=5, seed=7)
    assert out.audio.dtype == np.float32 and out.audio.shape == (5 * 32000,)
    assert np.isfinite(out.audio).all()
    assert out.codes.shape == (4, 250) and out.codes.min() >= 0 and out.codes.max() < 2048


def test_fp16_greedy_stays_close_to_fp32() -> None:
    """fp16 rounding changes some tokens, but the model must still be the same one."""
    out = MusicGen.load(TINY_FP16, device="cpu").generate(PROMPT, duration_sec=5, top_k=1)
    assert (out.codes[:, :10] == reference("greedy_g3_codes")[:, :10]).mean() > 0.5
