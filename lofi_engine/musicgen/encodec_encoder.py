"""EnCodec's encoder, which the published MusicGen files lack: an ONNX graph derived at first use from the EnCodec
weights as the Hub lays them out (``config.json`` + ``model.safetensors``, e.g. ``facebook/encodec_32khz``), with
``onnx`` and numpy only, and kept in the optimized-model cache.

The graph is transformers' ``EncodecModel.encode`` for an unnormalised, unchunked model (MusicGen's): SEANet's
weight-normalised convolutions with reflect padding, its residual blocks and ELUs, the LSTM with its skip, then
residual vector quantisation (the nearest codebook entry by the same distance, subtracted, the next codebook).
Audio is taken in whole frames: the samples before the first whole frame are dropped, so no convolution needs the
extra padding an unaligned length would (and the codes are exactly transformers' for that audio).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from lofi_engine.inference.session import run
from lofi_engine.shared.errors import INVALID_AUDIO, MODEL_LOAD_FAILED, LofiError

BUILDER_VERSION = 1
"""Bumped when the derived graph changes: a cached one of another version is built again."""
MIN_FRAMES = 8
"""The shortest audio encoded: its last convolution pads 3 frames by reflection, which needs more than that."""
_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file (its 8-byte header length, JSON header, then the raw data), as numpy."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
            data = f.read()
    except (OSError, ValueError, struct.error) as exc:
        raise LofiError(MODEL_LOAD_FAILED, f"cannot read the EnCodec weights {path}: {exc}") from None
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(spec["dtype"])
        if dtype is None:
            raise LofiError(MODEL_LOAD_FAILED, f"{path.name}: tensor {name} is {spec['dtype']}, which this reader does not take")
        start, end = spec["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(spec["shape"]).astype(np.float32 if dtype == np.float16 else dtype)
    return tensors


def num_quantizers(config: dict[str, Any]) -> int:
    """Codebooks used at the model's target bandwidth (2.2 kbps: 4 for MusicGen), as transformers counts them."""
    frame_rate = math.ceil(config["sampling_rate"] / np.prod(config["upsampling_ratios"]))
    per_codebook = math.log2(config["codebook_size"]) * frame_rate
    return int(max(1, math.floor(config["target_bandwidths"][-1] * 1000 / per_codebook)))


class _Builder:
    """The encoder's nodes, in order, over the weights of ``encoder.layers.*`` and ``quantizer.layers.*``."""

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.config, self.weights = config, weights
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attributes: Any) -> str:
        out = self.name(hint)
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attributes))
        return out

    def weight(self, prefix: str) -> np.ndarray:
        """A convolution's weight, weight norm applied (``g · v / ‖v‖`` over all but the output channel)."""
        w = self.weights
        for g_name, v_name in ((".parametrizations.weight.original0", ".parametrizations.weight.original1"), (".weight_g", ".weight_v")):
            if prefix + g_name in w:
                g, v = w[prefix + g_name], w[prefix + v_name]
                norm = np.sqrt((v.astype(np.float64) ** 2).sum(axis=(1, 2), keepdims=True))
                return (g * (v / norm)).astype(np.float32)
        if prefix + ".weight" in w:
            return w[prefix + ".weight"]
        raise LofiError(MODEL_LOAD_FAILED, f"the EnCodec weights lack {prefix}.weight")

    def conv(self, x: str, prefix: str, stride: int = 1, dilation: int = 1) -> str:
        weight = self.weight(prefix + ".conv")
        kernel = weight.shape[2]
        total = (kernel - 1) * dilation + 1 - stride
        right = total // 2
        left = total - right
        if total:
            x = self.node("Pad", [x, self.const("pads", np.array([0, 0, left, 0, 0, right], dtype=np.int64))], "pad", mode=self.config["pad_mode"])
        inputs = [x, self.const("w", weight), self.const("b", self.weights[prefix + ".conv.bias"])]
        return self.node("Conv", inputs, "conv", strides=[stride], dilations=[dilation], kernel_shape=[kernel])

    def elu(self, x: str) -> str:
        return self.node("Elu", [x], "elu", alpha=1.0)

    def resnet(self, x: str, prefix: str, dilation: int) -> str:
        y = self.conv(self.elu(x), f"{prefix}.block.1", dilation=dilation)
        y = self.conv(self.elu(y), f"{prefix}.block.3")
        shortcut = self.conv(x, f"{prefix}.shortcut") if self.config["use_conv_shortcut"] else x
        return self.node("Add", [shortcut, y], "residual")

    def lstm(self, x: str, prefix: str) -> str:
        """torch's LSTM (gates i, f, g, o) as ONNX LSTMs (gates i, o, f, c), one a layer, plus the skip."""
        sequence = self.node("Transpose", [x], "time_major", perm=[2, 0, 1])
        y = sequence
        for layer in range(self.config["num_lstm_layers"]):
            w = {k: self.weights[f"{prefix}.lstm.{k}_l{layer}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            hidden = w["weight_hh"].shape[1]

            def onnx_order(t: np.ndarray) -> np.ndarray:
                i, f, g, o = np.split(t, 4, axis=0)
                return np.concatenate([i, o, f, g], axis=0)

            inputs = [y, self.const("lstm_w", onnx_order(w["weight_ih"])[None]), self.const("lstm_r", onnx_order(w["weight_hh"])[None]),
                      self.const("lstm_b", np.concatenate([onnx_order(w["bias_ih"]), onnx_order(w["bias_hh"])])[None])]
            out = self.node("LSTM", inputs, "lstm", hidden_size=hidden)
            y = self.node("Squeeze", [out, self.const("axis", np.array([1], dtype=np.int64))], "lstm_out")
        y = self.node("Add", [y, sequence], "lstm_skip")
        return self.node("Transpose", [y], "channels_first", perm=[1, 2, 0])

    def encoder(self, audio: str) -> str:
        c = self.config
        index = 0
        x = self.conv(audio, f"encoder.layers.{index}")
        for ratio in reversed(c["upsampling_ratios"]):
            for j in range(c["num_residual_layers"]):
                index += 1
                x = self.resnet(x, f"encoder.layers.{index}", c["dilation_growth_rate"] ** j)
            index += 2  # the ELU, then the downsampling convolution
            x = self.conv(self.elu(x), f"encoder.layers.{index}", stride=ratio)
        index += 1
        x = self.lstm(x, f"encoder.layers.{index}")
        index += 2
        return self.conv(self.elu(x), f"encoder.layers.{index}")

    def quantize(self, embeddings: str) -> str:
        """Residual vector quantisation: ``-(‖x‖² − 2·x·E + ‖E‖²)``'s argmax, as transformers computes it."""
        rows = self.node("Transpose", [embeddings], "frames", perm=[0, 2, 1])
        residual = self.node("Reshape", [rows, self.const("shape", np.array([-1, self.config["codebook_dim"]], dtype=np.int64))], "rows")
        codes = []
        for q in range(num_quantizers(self.config)):
            embed = self.weights[f"quantizer.layers.{q}.codebook.embed"]
            squares = self.node("ReduceSum", [self.node("Mul", [residual, residual], "sq"), self.const("axis", np.array([1], dtype=np.int64))], "x2", keepdims=1)
            dot = self.node("MatMul", [residual, self.const("embed_t", embed.T.copy())], "dot")
            twice = self.node("Mul", [self.const("two", np.array(2.0, dtype=np.float32)), dot], "two_dot")
            distance = self.node("Add", [self.node("Sub", [squares, twice], "d"), self.const("e2", (embed**2).sum(axis=1, dtype=np.float32)[None])], "dist")
            nearest = self.node("ArgMax", [self.node("Neg", [distance], "neg")], "index", axis=1, keepdims=0)
            chosen = self.node("Gather", [self.const("embed", embed), nearest], "chosen", axis=0)
            residual = self.node("Sub", [residual, chosen], "residual")
            codes.append(self.node("Unsqueeze", [nearest, self.const("axis", np.array([0], dtype=np.int64))], "code"))
        return self.node("Concat", codes, "codes", axis=0)


def build_graph(config: dict[str, Any], weights: dict[str, np.ndarray]) -> Any:
    """The encoder as an ONNX model: ``audio`` float32 ``[1, 1, samples]`` (a whole number of frames) → ``codes``
    int64 ``[codebooks, frames]``."""
    from onnx import TensorProto, helper

    if config.get("normalize") or config.get("chunk_length_s") or config.get("use_causal_conv") or config.get("norm_type") != "weight_norm":
        raise LofiError(MODEL_LOAD_FAILED, "these EnCodec weights are not MusicGen's kind (unnormalised, unchunked, non-causal, weight norm)")
    builder = _Builder(config, weights)
    try:
        codes = builder.quantize(builder.encoder("audio"))
    except KeyError as exc:
        raise LofiError(MODEL_LOAD_FAILED, f"the EnCodec weights lack {exc.args[0]}") from None
    builder.nodes.append(helper.make_node("Identity", [codes], ["codes"]))
    graph = helper.make_graph(
        builder.nodes, "encodec_encoder",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 1, "samples"])],
        [helper.make_tensor_value_info("codes", TensorProto.INT64, [num_quantizers(config), "frames"])],
        builder.initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="lofi.nvim")


@dataclass
class EncodecEncoder:
    """The derived encoder's session; :meth:`load` derives (or takes from the cache) and opens it."""

    session: ort.InferenceSession
    sample_rate: int
    hop_length: int
    codebooks: int

    @classmethod
    def load(cls, encodec_dir: Path, cache_dir: Path | None = None, threads: int | None = None) -> "EncodecEncoder":
        from lofi_engine.inference.optimized_graphs import open_derived
        from lofi_engine.inference.providers import CPU

        config_path, weights_path = encodec_dir / "config.json", encodec_dir / "model.safetensors"
        for path in (config_path, weights_path):
            if not path.is_file():
                raise LofiError(MODEL_LOAD_FAILED, f"no {path.name} in {encodec_dir} (the EnCodec encoder is built from config.json and model.safetensors)")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LofiError(MODEL_LOAD_FAILED, f"cannot read {config_path}: {exc}") from None

        def derive(directory: Path) -> dict[str, Path]:
            import onnx

            onnx.save(build_graph(config, read_safetensors(weights_path)), str(directory / "encoder.onnx"))
            return {"encoder": directory / "encoder.onnx"}

        sessions = open_derived("encodec-encoder", [config_path, weights_path], f"v{BUILDER_VERSION}", derive, threads, [CPU],
                                {"encoder": ("audio",)}, cache_dir)
        return cls(sessions["encoder"], config["sampling_rate"], int(np.prod(config["upsampling_ratios"])), num_quantizers(config))

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """Codes ``[codebooks, frames]`` of float32 mono ``audio`` at :attr:`sample_rate`, from its first whole frame
        (counted from the end) on. INVALID_AUDIO when it holds fewer than :data:`MIN_FRAMES` frames."""
        frames = len(audio) // self.hop_length
        if frames < MIN_FRAMES:
            raise LofiError(INVALID_AUDIO, f"the audio is too short to continue: {len(audio) / self.sample_rate:.2f} s, at least {MIN_FRAMES * self.hop_length / self.sample_rate:.2f} s")
        whole = np.ascontiguousarray(audio[len(audio) - frames * self.hop_length :], dtype=np.float32)
        return run(self.session, {"audio": whole[None, None]}, "EnCodec encoder")[0]
