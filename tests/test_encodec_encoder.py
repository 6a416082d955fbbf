"""Issue 21 item 1: EnCodec's encoder derived as an ONNX graph from the EnCodec weights (config.json +
model.safetensors) with onnx and numpy only; its codes are exactly transformers' EncodecModel.encode on the tiny
random EnCodec of the MusicGen fixture (tests/fixtures/encodec-tiny, made by `make fixtures`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lofi_engine import LofiError
from lofi_engine.musicgen.encodec_encoder import EncodecEncoder, read_safetensors

FIXTURES = Path(__file__).parent / "fixtures"
ENCODEC = FIXTURES / "encodec-tiny"
REFERENCE = np.load(FIXTURES / "musicgen-tiny-reference" / "encodec.npz")
CASES = sorted({name.rsplit("_", 1)[0] for name in REFERENCE.files})


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> EncodecEncoder:
    return EncodecEncoder.load(ENCODEC, cache_dir=tmp_path_factory.mktemp("optimized"))


@pytest.mark.parametrize("case", CASES)
def test_the_codes_are_exactly_transformers(encoder: EncodecEncoder, case: str) -> None:
    audio = REFERENCE[f"{case}_audio"].astype(np.float32)
    expected = REFERENCE[f"{case}_codes"]
    codes = encoder.encode(audio)
    assert codes.shape == expected.shape == (4, len(audio) // 640)
    assert np.array_equal(codes, expected), f"{(codes != expected).sum()} of {codes.size} codes differ"


def test_samples_before_the_first_whole_frame_are_dropped(encoder: EncodecEncoder) -> None:
    """A length that is not a whole number of frames: its end is what continues, so its start gives way."""
    audio = REFERENCE["noise_1s_audio"].astype(np.float32)
    longer = np.concatenate([np.full(123, 0.7, dtype=np.float32), audio])
    assert np.array_equal(encoder.encode(longer), REFERENCE["noise_1s_codes"])


def test_too_short_audio_is_refused_with_its_length(encoder: EncodecEncoder) -> None:
    with pytest.raises(LofiError) as err:
        encoder.encode(np.zeros(640 * 3, dtype=np.float32))
    assert err.value.code == "INVALID_AUDIO" and "0.06 s" in err.value.message


def test_the_graph_is_kept_and_taken_from_the_cache(tmp_path: Path) -> None:
    first = EncodecEncoder.load(ENCODEC, cache_dir=tmp_path)
    kept = sorted(p.name for p in tmp_path.iterdir())
    again = EncodecEncoder.load(ENCODEC, cache_dir=tmp_path)
    assert kept and sorted(p.name for p in tmp_path.iterdir()) == kept
    audio = REFERENCE["tone_1s_audio"].astype(np.float32)
    assert np.array_equal(first.encode(audio), again.encode(audio))


def test_missing_or_broken_weights_are_named(tmp_path: Path) -> None:
    with pytest.raises(LofiError) as err:
        EncodecEncoder.load(tmp_path)
    assert err.value.code == "MODEL_LOAD_FAILED" and "config.json" in err.value.message
    (tmp_path / "config.json").write_bytes((ENCODEC / "config.json").read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(LofiError) as err:
        EncodecEncoder.load(tmp_path)
    assert err.value.code == "MODEL_LOAD_FAILED" and "model.safetensors" in err.value.message


def test_the_safetensors_reader_reads_what_the_file_holds() -> None:
    weights = read_safetensors(ENCODEC / "model.safetensors")
    assert weights["quantizer.layers.0.codebook.embed"].shape == (2048, 16)
    assert weights["encoder.layers.0.conv.bias"].dtype == np.float32


@pytest.mark.parametrize("form", ["merged", "split"])
def test_continuing_the_encoded_audio_is_token_exact_with_transformers_audio_prompt(encoder: EncodecEncoder, form: str) -> None:
    """transformers' generate(input_values=a 1 s tone), greedy, guidance 3.0, 5 s more: the tone's codes from our
    encoder, continued by our decoder with the tone in both guidance branches, are its codes token for token."""
    from conftest import PROMPT, TINY

    from lofi_engine import MusicGen
    from lofi_engine.musicgen.sampling import TokenSampler
    from lofi_engine.musicgen.text import encode_prompt
    from lofi_engine.musicgen.windows import Window

    expected = np.load(FIXTURES / "musicgen-tiny-reference" / "audio_prompt_g3_codes.npy")
    prompt = encoder.encode(REFERENCE["tone_1s_audio"].astype(np.float32))
    model = MusicGen.load(TINY, device="cpu", decoder=form)
    hidden, mask = encode_prompt(model.tokenizer, model.text_encoder, PROMPT, guidance=True)
    sampler = TokenSampler(np.random.default_rng(0), top_k=1, temperature=1.0, guidance_scale=3.0)
    composition = model.compose([Window(prompt.shape[1], 250, 253)], hidden, mask, sampler, context=prompt)
    for _ in composition:
        pass
    assert expected.shape == (4, 300)
    np.testing.assert_array_equal(composition.codes, expected)
