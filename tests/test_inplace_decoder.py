"""Issue 14: the decoder derived with an in-place key/value cache (GroupQueryAttention over one preallocated buffer
per tensor), its fallback, its cache on disk, and the int4 variant made from the fp32 files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import PROMPT, TINY, TINY_FP16, TINY_INT8, reference

from lofi_engine import LofiError, MusicGen
from lofi_engine.musicgen import decoder as decoder_module
from lofi_engine.musicgen import inplace_graph
from lofi_engine.musicgen.decoder import CachedDecoder, InPlaceDecoder
from lofi_engine.musicgen.sampling import TokenSampler
from lofi_engine.musicgen.text import encode_prompt
from lofi_engine.musicgen.windows import Window


def entries(cache: Path) -> list[Path]:
    """The cached graphs (one directory each; the learned step costs sit beside them in a file)."""
    return sorted(p for p in cache.iterdir() if p.is_dir() and not p.name.startswith("."))


def teacher_forced_logits(model: MusicGen, codes: np.ndarray, guidance: float) -> np.ndarray:
    """The decoder's logits along a fixed token sequence (prefill of the start column, then one token a step)."""
    hidden, mask = encode_prompt(model.tokenizer, model.text_encoder, PROMPT, guidance > 1)
    rows = hidden.shape[0]
    grid = np.concatenate([np.full((codes.shape[0], 1), 2048), codes], axis=1)
    out = [model.decoder.start(np.tile(grid[:, :1], (rows, 1)), hidden, mask, capacity=grid.shape[1])]
    for position in range(1, grid.shape[1] - 1):
        out.append(model.decoder.step(np.tile(grid[:, position : position + 1], (rows, 1))))
    return np.stack(out)


# ---- exact on every published form ----------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["merged", "split"])
@pytest.mark.parametrize("guidance", [3.0, 1.0])
def test_in_place_codes_equal_transformers(form: str, guidance: float) -> None:
    model = MusicGen.load(TINY, device="cpu", decoder=form)
    assert isinstance(model.decoder, InPlaceDecoder) and model.decoder.merged == (form == "merged")
    out = model.generate(PROMPT, duration_sec=5, top_k=1, guidance_scale=guidance)
    np.testing.assert_array_equal(out.codes, reference(f"greedy_g{guidance:g}_codes"))
    np.testing.assert_allclose(out.audio, reference(f"greedy_g{guidance:g}_audio"), atol=1e-4, rtol=0)


@pytest.mark.parametrize("form", ["merged", "split"])
def test_in_place_windowed_continuation_equals_transformers(form: str) -> None:
    """A prompt of 50 frames prefilled in one call into the in-place buffer, then continued a token a step."""
    model = MusicGen.load(TINY, device="cpu", decoder=form)
    assert isinstance(model.decoder, InPlaceDecoder)
    prompt_codes = reference("greedy_g1_codes")[:, :50]
    hidden, mask = encode_prompt(model.tokenizer, model.text_encoder, PROMPT, guidance=False)
    sampler = TokenSampler(np.random.default_rng(0), top_k=1, temperature=1.0, guidance_scale=1.0)
    composition = model.compose([Window(prompt_codes.shape[1], 100, 103)], hidden, mask, sampler, context=prompt_codes)
    for _ in composition:
        pass
    codes = composition.codes
    np.testing.assert_array_equal(codes, reference("continuation_g1_codes"))


def test_in_place_through_several_windows_equals_the_published_graph() -> None:
    """40 s = two windows (the second prefilled from 12 s of context): same codes as the published graph."""
    ours = MusicGen.load(TINY, device="cpu").generate(PROMPT, duration_sec=40, top_k=1, guidance_scale=1.0)
    theirs = MusicGen.load(TINY, device="cpu", in_place=False).generate(PROMPT, duration_sec=40, top_k=1, guidance_scale=1.0)
    np.testing.assert_array_equal(ours.codes, theirs.codes)


@pytest.mark.parametrize(("model_dir", "merged", "atol", "agree"), [(TINY_INT8, True, 1e-4, 1.0), (TINY_FP16, False, None, 0.98)])
@pytest.mark.parametrize("guidance", [3.0, 1.0])
def test_int8_and_fp16_in_place_follow_their_published_graph(model_dir: Path, merged: bool, atol, agree: float, guidance: float) -> None:
    """No transformers reference exists for these: teacher-forced along the same tokens, the in-place graph's logits
    equal the published graph's (int8 within fp32 noise; fp16 within fp16 rounding: GroupQueryAttention
    accumulates in fp32 where the published graph rounds its scores and softmax to fp16)."""
    ours = MusicGen.load(model_dir, device="cpu")
    theirs = MusicGen.load(model_dir, device="cpu", in_place=False)
    assert isinstance(ours.decoder, InPlaceDecoder) and isinstance(theirs.decoder, CachedDecoder)
    assert ours.decoder.merged is merged and ours.decoder.dtype == theirs.decoder.dtype
    assert ours.model_version == theirs.model_version
    codes = reference(f"greedy_g{guidance:g}_codes")[:, :120]
    a, b = teacher_forced_logits(ours, codes, guidance), teacher_forced_logits(theirs, codes, guidance)
    assert (a.argmax(-1) == b.argmax(-1)).mean() >= agree
    if atol is not None:
        np.testing.assert_allclose(a, b, atol=atol, rtol=0)
    else:
        assert np.quantile(np.abs(a - b), 0.99) < 0.1
    out = ours.generate(PROMPT, duration_sec=5, seed=7)
    assert out.codes.shape == (4, 250) and np.isfinite(out.audio).all()


# ---- the cache stays where it is ------------------------------------------------------------------------------


@pytest.mark.parametrize(("model_dir", "form", "cross_rewritten"), [(TINY, "merged", True), (TINY, "split", True), (TINY_INT8, "merged", True), (TINY_FP16, "split", False)])
def test_the_step_graph_has_one_attention_node_per_layer_and_kind(model_dir: Path, form: str, cross_rewritten: bool, tmp_path: Path) -> None:
    """Self-attention becomes GroupQueryAttention; cross-attention becomes one MultiHeadAttention over the cached
    encoder keys/values (fp32 and int8: ONNX Runtime's CPU kernel is fp32), which leaves no head split, merge or
    shape arithmetic of its own. Exactness is what the tests above check; this keeps the speed from silently going."""
    shape = inplace_graph.build(model_dir, form, tmp_path)
    ops = [n.op_type for n in onnx.load(str(tmp_path / inplace_graph.STEP), load_external_data=False).graph.node]
    assert ops.count("GroupQueryAttention") == shape.layers
    assert ops.count("MultiHeadAttention") == (shape.layers if cross_rewritten else 0)
    assert ops.count("Softmax") == (0 if cross_rewritten else shape.layers)


def test_the_cache_buffer_is_written_in_place_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime writes each step's keys/values into the bound buffer itself: every present output of every
    call lives at the buffer's address (no cache output is allocated), and the buffers never move during a job;
    they are let go before its decode (the job's peak memory is the cache or the decode, not both)."""
    model = MusicGen.load(TINY, device="cpu")
    decoder = model.decoder
    assert isinstance(decoder, InPlaceDecoder)
    calls: list[list[int]] = []
    buffers: list[list[int]] = []
    real = decoder_module.run_bound

    def spy(session, binding, what):
        outputs = real(session, binding, what)
        if session is decoder.step_session:
            calls.append([value.data_ptr() for value in outputs[1:]])
            buffers.append([decoder.cache_addresses()[name] for name in decoder._self_names])
        return outputs

    monkeypatch.setattr(decoder_module, "run_bound", spy)
    model.generate(PROMPT, duration_sec=5, top_k=1)
    assert len(calls) == 253 and len(buffers[0]) == 2 * 2  # prefill + 252 steps; 2 layers x (key, value)
    assert all(call == buffers[0] for call in calls) and all(b == buffers[0] for b in buffers)
    assert decoder.cache_addresses() == {}


def test_device_buffers_give_the_same_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU's way of holding the cache (ONNX Runtime buffers bound as OrtValues, cross-attention values left
    on the device), run here on the CPU's device with the fp16 files the GPU runs: the same codes as the numpy
    buffers give, and the buffers never move. (CUDA's own kernels need a GPU; none is lent to these machines.)"""
    expected = MusicGen.load(TINY_FP16, device="cpu").generate(PROMPT, duration_sec=5, top_k=1).codes
    monkeypatch.setattr(InPlaceDecoder, "_reserve", lambda self, rows, capacity: self._reserve_on_device(rows, capacity))
    model = MusicGen.load(TINY_FP16, device="cpu")
    decoder = model.decoder
    assert isinstance(decoder, InPlaceDecoder)
    seen: list[dict[str, int]] = []
    real = decoder_module.run_bound

    def spy(session, binding, what):
        outputs = real(session, binding, what)
        if session is decoder.step_session:
            assert all(isinstance(b, ort.OrtValue) for b in decoder._buffers.values())
            seen.append(decoder.cache_addresses())
            assert [v.data_ptr() for v in outputs[1:]] == [seen[-1][n] for n in decoder._self_names]
        return outputs

    monkeypatch.setattr(decoder_module, "run_bound", spy)
    codes = model.generate(PROMPT, duration_sec=5, top_k=1).codes
    assert len(seen) == 253 and all(s == seen[0] for s in seen)
    np.testing.assert_array_equal(codes, expected)


# ---- fallback and the cache on disk ---------------------------------------------------------------------------


def _unexpected_softmax(path: Path) -> None:
    """Layer 0's self-attention Softmax written as Exp / ReduceSum / Div: the same function, another structure."""
    model = onnx.load(str(path))
    graph = next(a.g for a in model.graph.node[0].attribute if a.name == "then_branch")
    index, node = next((i, n) for i, n in enumerate(graph.node) if n.op_type == "Softmax" and "layers.0/self_attn" in n.output[0])
    x, y = node.input[0], node.output[0]
    axes = onnx.helper.make_node("Constant", [], ["axes_last"], value=onnx.numpy_helper.from_array(np.array([-1], np.int64)))
    replacement = [
        axes,
        onnx.helper.make_node("ReduceMax", [x, "axes_last"], ["sm_max"], keepdims=1),
        onnx.helper.make_node("Sub", [x, "sm_max"], ["sm_shift"]),
        onnx.helper.make_node("Exp", ["sm_shift"], ["sm_exp"]),
        onnx.helper.make_node("ReduceSum", ["sm_exp", "axes_last"], ["sm_sum"], keepdims=1),
        onnx.helper.make_node("Div", ["sm_exp", "sm_sum"], [y]),
    ]
    del graph.node[index]
    for offset, new in enumerate(replacement):
        graph.node.insert(index + offset, new)
    onnx.save(model, str(path))


def test_an_unexpected_structure_falls_back_with_the_reason_logged(tiny_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    _unexpected_softmax(tiny_copy / "decoder_model_merged.onnx")
    with caplog.at_level(logging.WARNING, logger="lofi.engine"):
        model = MusicGen.load(tiny_copy, device="cpu")
    assert isinstance(model.decoder, CachedDecoder)
    assert "in-place decoder not used" in caplog.text and "layer 0 self-attention" in caplog.text
    assert "running the published graph" in caplog.text
    out = model.generate(PROMPT, duration_sec=5, top_k=1, guidance_scale=3.0)
    np.testing.assert_array_equal(out.codes, reference("greedy_g3_codes"))


def test_the_in_place_graphs_are_cached_and_a_corrupt_one_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "optimized"
    MusicGen.load(TINY, device="cpu", optimized_cache=cache)
    built = entries(cache)
    assert [p.name.rsplit("-", 1)[0] for p in built] == ["encodec_decode", "inplace-cross", "inplace-step", "text_encoder"]
    step = next(p for p in built if p.name.startswith("inplace-step"))
    stamp = (step / "model.onnx").stat().st_mtime_ns

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached in-place graph should have been reused")

    with monkeypatch.context() as patch:
        patch.setattr(inplace_graph, "build", no_rebuild)
        model = MusicGen.load(TINY, device="cpu", optimized_cache=cache)
    assert isinstance(model.decoder, InPlaceDecoder) and entries(cache) == built
    assert (step / "model.onnx").stat().st_mtime_ns == stamp

    (step / "model.onnx").write_bytes(b"not a model")
    model = MusicGen.load(TINY, device="cpu", optimized_cache=cache)
    assert isinstance(model.decoder, InPlaceDecoder)
    np.testing.assert_array_equal(model.generate(PROMPT, duration_sec=5, top_k=1).codes, reference("greedy_g3_codes"))
    assert (step / "model.onnx").stat().st_size > 100 and entries(cache) == built


def test_the_published_files_are_never_modified(tmp_path: Path, tiny_copy: Path) -> None:
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tiny_copy.iterdir()}
    MusicGen.load(tiny_copy, device="cpu", optimized_cache=tmp_path / "optimized")
    MusicGen.load(tiny_copy, device="cpu", decoder="split")
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tiny_copy.iterdir()} == before


# ---- int4 --------------------------------------------------------------------------------------------------------


def test_4bit_packing_matches_onnx_runtime() -> None:
    """quantize_4bit's layout is MatMulNBits' own: ONNX Runtime's product equals the dequantized weights' product."""
    rng = np.random.default_rng(3)
    k, n = 64, 48
    weight = rng.standard_normal((k, n)).astype(np.float32)
    packed, scales = inplace_graph.quantize_4bit(weight)
    q = np.stack([packed & 15, packed >> 4], axis=-1).reshape(n, k // 32, 32).astype(np.float32) - 8
    dequantized = (q * scales.reshape(n, k // 32, 1)).reshape(n, k).T
    assert np.abs(dequantized - weight).max() <= np.abs(weight).max() / 8
    node = onnx.helper.make_node("MatMulNBits", ["a", "b", "s"], ["y"], domain="com.microsoft", K=k, N=n, bits=4, block_size=32)
    graph = onnx.helper.make_graph(
        [node], "q4", [onnx.helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [3, k])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3, n])],
        [onnx.numpy_helper.from_array(packed, "b"), onnx.numpy_helper.from_array(scales, "s")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a = rng.standard_normal((3, k)).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"a": a})[0], a @ dequantized, atol=1e-4, rtol=1e-4)


def test_int4_is_made_from_fp32_cached_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "optimized"
    model = MusicGen.load(TINY, device="cpu", optimized_cache=cache, quantize="int4")
    assert isinstance(model.decoder, InPlaceDecoder) and model.model_version.endswith("-int4-v1")
    int4 = [p for p in entries(cache) if p.name.startswith("int4-")]
    assert [p.name.rsplit("-", 1)[0] for p in int4] == ["int4-cross", "int4-step"]
    graph = onnx.load(str(next(p for p in int4 if "step" in p.name) / "model.onnx"), load_external_data=False)
    ops = {n.op_type for n in graph.graph.node}
    assert "MatMulNBits" in ops and "GroupQueryAttention" in ops
    out = model.generate(PROMPT, duration_sec=5, seed=7)
    assert out.codes.shape == (4, 250) and out.codes.min() >= 0 and out.codes.max() < 2048 and np.isfinite(out.audio).all()
    greedy = model.generate(PROMPT, duration_sec=5, top_k=1, guidance_scale=1.0).codes

    with monkeypatch.context() as patch:
        patch.setattr(inplace_graph, "build", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rebuilt")))
        again = MusicGen.load(TINY, device="cpu", optimized_cache=cache, quantize="int4")
    np.testing.assert_array_equal(again.generate(PROMPT, duration_sec=5, top_k=1, guidance_scale=1.0).codes, greedy)
    assert [p for p in entries(cache) if p.name.startswith("int4-")] == int4


def test_a_read_only_cache_still_gives_the_in_place_decoder(tmp_path: Path) -> None:
    cache = tmp_path / "optimized"
    cache.mkdir()
    shutil.copystat(TINY, cache)
    cache.chmod(0o500)
    try:
        model = MusicGen.load(TINY, device="cpu", optimized_cache=cache)
        assert isinstance(model.decoder, InPlaceDecoder)
        np.testing.assert_array_equal(model.generate(PROMPT, duration_sec=5, top_k=1).codes, reference("greedy_g3_codes"))
    finally:
        cache.chmod(0o700)


@pytest.mark.parametrize("model_dir", [TINY_INT8, TINY_FP16])
def test_int4_is_refused_from_files_that_are_not_fp32(model_dir: Path, tmp_path: Path) -> None:
    """small-int4 is made from the fp32 download only: int8 or fp16 files are a clear MODEL_LOAD_FAILED, at once."""
    with pytest.raises(LofiError) as caught:
        MusicGen.load(model_dir, device="cpu", optimized_cache=tmp_path, quantize="int4")
    assert caught.value.code == "MODEL_LOAD_FAILED" and "made from the fp32 files" in caught.value.message and caught.value.path is None
    assert not any(p.name.startswith("int4") for p in tmp_path.iterdir())
