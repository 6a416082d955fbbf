"""FR-019…FR-023: every failure is a LofiError with the spec's code and a message that says what to do."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import PROMPT
from onnx import numpy_helper

from lofi_engine import LofiError, MusicGen


def expect(code: str, fn, *args, **kwargs) -> LofiError:
    with pytest.raises(LofiError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code
    assert "Traceback" not in info.value.message
    return info.value


def test_missing_file_names_the_file_and_directory(tiny_copy: Path) -> None:
    (tiny_copy / "encodec_decode.onnx").unlink()
    (tiny_copy / "tokenizer.json").unlink()
    err = expect("MODEL_NOT_FOUND", MusicGen.load, tiny_copy)
    assert "encodec_decode.onnx" in err.message and "tokenizer.json" in err.message and str(tiny_copy) in err.message


def test_missing_directory(tmp_path: Path) -> None:
    err = expect("MODEL_NOT_FOUND", MusicGen.load, tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in err.message


def test_split_decoder_requested_but_absent(tiny_copy: Path) -> None:
    (tiny_copy / "decoder_with_past_model.onnx").unlink()
    err = expect("MODEL_NOT_FOUND", MusicGen.load, tiny_copy, decoder="split")
    assert "decoder_with_past_model.onnx" in err.message
    assert MusicGen.load(tiny_copy, decoder="auto").decoder.merged


def test_truncated_onnx_file(tiny_copy: Path) -> None:
    path = tiny_copy / "decoder_model_merged.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    err = expect("MODEL_LOAD_FAILED", MusicGen.load, tiny_copy)
    assert "decoder_model_merged.onnx" in err.message


def test_random_bytes_as_onnx(tiny_copy: Path) -> None:
    (tiny_copy / "text_encoder.onnx").write_bytes(os.urandom(4096))
    err = expect("MODEL_LOAD_FAILED", MusicGen.load, tiny_copy)
    assert "text_encoder.onnx" in err.message


def test_wrong_model_in_the_right_place(tiny_copy: Path) -> None:
    (tiny_copy / "encodec_decode.onnx").write_bytes((tiny_copy / "text_encoder.onnx").read_bytes())
    err = expect("MODEL_LOAD_FAILED", MusicGen.load, tiny_copy)
    assert "audio_codes" in err.message


def test_corrupt_config_and_tokenizer(tiny_copy: Path) -> None:
    (tiny_copy / "config.json").write_text("{not json")
    expect("MODEL_LOAD_FAILED", MusicGen.load, tiny_copy)
    (tiny_copy / "config.json").write_text("{}")
    expect("MODEL_LOAD_FAILED", MusicGen.load, tiny_copy)


def test_corrupt_tokenizer(tiny_copy: Path) -> None:
    (tiny_copy / "tokenizer.json").write_text('{"version": "1.0"}')
    err = expect("MODEL_LOAD_FAILED", MusicGen.load, tiny_copy)
    assert "tokenizer.json" in err.message


@pytest.mark.parametrize("duration", [4, 4.99, 121, 120.01, -5, float("nan"), "30", None, True])
def test_invalid_duration_before_any_model_work(tiny: MusicGen, duration) -> None:
    calls = []
    err = expect("INVALID_DURATION", tiny.generate, PROMPT, duration_sec=duration, on_step=lambda *a: calls.append(a))
    assert "5" in err.message and "120" in err.message
    assert calls == []  # refused before the first decoder step


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t", None])
def test_invalid_prompt(tiny: MusicGen, prompt) -> None:
    expect("INVALID_PROMPT", tiny.generate, prompt, duration_sec=5)


@pytest.mark.parametrize(
    "kwargs", [{"seed": -1}, {"seed": 2**32}, {"seed": 1.5}, {"top_k": 0}, {"temperature": 0}, {"guidance_scale": 0.5}]
)
def test_invalid_sampling_parameters(tiny: MusicGen, kwargs) -> None:
    expect("INVALID_PARAMS", tiny.generate, PROMPT, duration_sec=5, **kwargs)


@pytest.mark.parametrize("device", ["cuda", "metal"])
def test_unavailable_gpu_names_provider_and_package(device: str) -> None:
    import onnxruntime as ort

    provider = {"cuda": "CUDAExecutionProvider", "metal": "CoreMLExecutionProvider"}[device]
    if provider in ort.get_available_providers():
        pytest.skip(f"{provider} is present on this machine")
    err = expect("DEVICE_UNAVAILABLE", MusicGen.load, "tests/fixtures/musicgen-tiny", device=device)
    assert provider in err.message and "onnxruntime" in err.message


def test_auto_device_falls_back_to_cpu(tiny: MusicGen) -> None:
    """"auto" takes a GPU provider when this ONNX Runtime has one, else runs on the CPU alone."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    gpus = [p for p in ("CUDAExecutionProvider", "CoreMLExecutionProvider") if p in available]
    loaded = MusicGen.load("tests/fixtures/musicgen-tiny", device="auto")
    for session in (loaded.text_encoder, loaded.audio_decoder, loaded.decoder.first):
        assert session.get_providers() == gpus[:1] + ["CPUExecutionProvider"]


def test_nan_logits_are_an_inference_failure(tiny_copy: Path) -> None:
    path = tiny_copy / "decoder_model_merged.onnx"
    model = onnx.load(path)
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and list(init.dims)[-1:] == [2048]:  # the lm heads
            init.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(init), np.nan), init.name))
    onnx.save(model, path)
    err = expect("MODEL_INFERENCE_FAILED", MusicGen.load(tiny_copy).generate, PROMPT, duration_sec=5)
    assert "NaN" in err.message


def test_variant_defaults_to_fp16_on_a_gpu_and_fp32_otherwise() -> None:
    """Issue 3: small (fp32) is the CPU default, small-fp16 the GPU default; an explicit choice wins."""
    from lofi_engine.shared.settings import EngineConfig

    assert EngineConfig().variant == "small"
    assert EngineConfig(device="cuda").variant == EngineConfig(device="metal").variant == "small-fp16"
    assert EngineConfig(device="cuda", variant="small-int8").variant == "small-int8"
    assert EngineConfig(**EngineConfig(device="cuda").to_dict()).variant == "small-fp16"
    with pytest.raises(LofiError) as err:
        EngineConfig(variant="large")
    assert err.value.code == "INVALID_PARAMS"
