"""Export an ACE-Step 1.5 turbo checkpoint (diffusers layout) to the ONNX files the engine runs.

    python -m lofi_engine.dev.export_ace_step CHECKPOINT_DIR --out DIR [--no-int8] [--revision REV]

Needs torch, diffusers ≥ 0.38, transformers 5.x, onnx and onnx-ir (`make ace-dev`); the engine itself never imports
this. Writes text_encoder / condition_encoder / dit / vae_decoder graphs with dynamic length axes (external data for
files over 2 GB), int8 weight-only copies of the three transformers, tokenizer.json, silence_latent.npy and manifest.json (files with sha256 and
sizes, tensor names and dtypes, rates, steps, shift, source revision). Each graph is checked against torch at two
lengths before the manifest is written; a failed check leaves no manifest, so the runtime will not load the export.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnxruntime as ort

from lofi_engine.inference.providers import session_options
from lofi_engine.store.ace_step_manifest import FORMAT, MANIFEST, file_entry
from lofi_engine.store.jsonfile import write_json_atomic

try:
    import diffusers  # noqa: F401 (checked here, used inside export_checkpoint)
    import onnx
    import torch
    import torch.nn.functional as F
    from onnx.external_data_helper import uses_external_data
    from torch import nn
except ImportError as missing:
    if __name__ == "__main__":
        sys.exit(
            f"error: the export tool needs {missing.name} (torch, diffusers ≥ 0.38, transformers 5.x, onnx, onnx-ir), "
            "which the engine's environment does not have: run `make ace-dev` and use .venv-ace/bin/python"
        )
    raise

OPSET = 18
TWO_GB = 2 * 1024**3
INSTRUMENTAL_LYRIC = "[inst]"
VOCAL_LANGUAGE = "en"
TIMBRE_SECONDS = 30
"""The pipeline feeds the timbre encoder 30 s of the model's silence latent when no reference audio is given."""


# ---- export-friendly pieces (same arithmetic as diffusers, no sizes frozen by tracing) ----------------------------


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE over ``x [B, L, H, D]`` (diffusers' ``use_real_unbind_dim=-2``), halves taken with chunk."""
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    real, imag = x.chunk(2, dim=-1)
    rotated = torch.cat([-imag, real], dim=-1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


class ExportAttnProcessor:
    """ACE-Step GQA attention for export: K/V heads expanded with expand/flatten (SDPA's enable_gqa does not export)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        is_cross = attn.is_cross_attention and encoder_hidden_states is not None
        source = encoder_hidden_states if is_cross else hidden_states
        query = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, (attn.heads, attn.head_dim)))
        key = attn.norm_k(attn.to_k(source).unflatten(-1, (attn.kv_heads, attn.head_dim)))
        value = attn.to_v(source).unflatten(-1, (attn.kv_heads, attn.head_dim))
        if not is_cross and image_rotary_emb is not None:
            query, key = _rope(query, *image_rotary_emb), _rope(key, *image_rotary_emb)
        query, key, value = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
        groups = attn.heads // attn.kv_heads
        if groups > 1:
            key = key.unsqueeze(2).expand(-1, -1, groups, -1, -1).flatten(1, 2)
            value = value.unsqueeze(2).expand(-1, -1, groups, -1, -1).flatten(1, 2)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=attn.scaling)
        out = out.transpose(1, 2).flatten(2, 3).to(query.dtype)
        return attn.to_out[1](attn.to_out[0](out))


def _mask_4d(seq_len, dtype, device, attention_mask=None, sliding_window=None, is_sliding_window=False, is_causal=True):
    """diffusers' ``_create_4d_mask`` without ``torch.full`` over a traced shape (which freezes the length)."""
    index = torch.arange(seq_len, device=device)
    diff = index.unsqueeze(1) - index.unsqueeze(0)
    valid = torch.ones_like(diff, dtype=torch.bool)
    if is_causal:
        valid = valid & (diff >= 0)
    if is_sliding_window and sliding_window is not None:
        valid = valid & ((diff <= sliding_window) if is_causal else (diff.abs() <= sliding_window))
    valid = valid[None, None]
    if attention_mask is not None:
        valid = valid & attention_mask[:, None, None, :].to(torch.bool)
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(valid, zero, torch.full((), torch.finfo(dtype).min, dtype=dtype, device=device))


@contextmanager
def export_friendly(*models: nn.Module) -> Iterator[None]:
    """Swap in the export processor and mask builder for the duration of an export (and its torch reference)."""
    from diffusers.models.transformers import ace_step_transformer
    from diffusers.pipelines.ace_step import modeling_ace_step

    saved = [(m, "_create_4d_mask", m._create_4d_mask) for m in (ace_step_transformer, modeling_ace_step)]
    processors = []
    for model in models:
        for module in model.modules():
            if module.__class__.__name__ == "AceStepAttention":
                processors.append((module, module.processor))
                module.processor = ExportAttnProcessor()
    for module, name, _ in saved:
        setattr(module, name, _mask_4d)
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)
        for module, processor in processors:
            module.processor = processor


class TextEncoderGraph(nn.Module):
    """Qwen3 over the formatted prompt, and the token embeddings of the lyric (the lyric encoder contextualises them)."""

    def __init__(self, text_encoder: nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids, attention_mask, lyric_ids):
        hidden = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return hidden, self.text_encoder.get_input_embeddings()(lyric_ids)


class ConditionEncoderGraph(nn.Module):
    """``AceStepConditionEncoder`` for one request without padding: lyric | timbre | text, as its packing yields.

    With every mask all ones, the stable sort in ``_pack_sequences`` is the identity and the timbre unpacking of one
    reference is its first token, so both reduce to concatenation.
    """

    def __init__(self, condition_encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = condition_encoder

    def forward(self, text_hidden_states, lyric_embeds, timbre_latents):
        enc = self.encoder
        text = enc.text_projector(text_hidden_states)
        lyric = enc.lyric_encoder(inputs_embeds=lyric_embeds, attention_mask=torch.ones_like(lyric_embeds[..., 0]))
        timbre = self._timbre(timbre_latents)
        return torch.cat([lyric, timbre, text], dim=1)

    def _timbre(self, latents):
        timbre = self.encoder.timbre_encoder
        original = timbre.unpack_timbre_embeddings
        timbre.unpack_timbre_embeddings = lambda pooled, order: (pooled.unsqueeze(1), None)
        try:
            return timbre(latents, torch.zeros(latents.shape[0], dtype=torch.long))[0]
        finally:
            timbre.unpack_timbre_embeddings = original


class DiTGraph(nn.Module):
    """One DiT evaluation; the host pads the length to a multiple of the patch size (the graph is traced at one)."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, hidden_states, timestep, timestep_r, encoder_hidden_states, context_latents):
        return self.transformer(
            hidden_states=hidden_states,
            timestep=timestep,
            timestep_r=timestep_r,
            encoder_hidden_states=encoder_hidden_states,
            context_latents=context_latents,
            return_dict=False,
        )[0]


class VaeDecoderGraph(nn.Module):
    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.decoder = vae.decoder

    def forward(self, latents):
        return self.decoder(latents)


def remove_weight_norm(module: nn.Module) -> None:
    """Fold weight_norm (old hook API or parametrizations) into plain weights: ONNX has no use for it."""
    from torch.nn.utils import parametrize

    for child in module.modules():
        if parametrize.is_parametrized(child, "weight"):
            parametrize.remove_parametrizations(child, "weight", leave_parametrized=True)
        elif hasattr(child, "weight_g"):
            torch.nn.utils.remove_weight_norm(child)


# ---- export ------------------------------------------------------------------------------------------------------


class Exporter:
    """Writes graphs into ``out``, remembering each one's tensor names and external data for the manifest."""

    def __init__(self, out: Path, log=print) -> None:
        self.out = out
        self.log = log
        self.graphs: dict[str, dict[str, Any]] = {}
        self.external: dict[str, list[str]] = {}

    def export(self, role: str, module: nn.Module, example: dict[str, torch.Tensor], outputs: list[str],
               dynamic: dict[str, dict[int, str]], check: dict[str, torch.Tensor]) -> str:
        """Trace ``module`` at ``example``, save it (external data past 2 GB), compare with torch at ``check``."""
        name = f"{role}.onnx"
        path = self.out / name
        started = time.perf_counter()
        feeds = [example, check]
        with torch.no_grad():  # torch's answers first, so no ONNX copy of the weights is alive meanwhile
            expected = [_as_tuple(module(*feed.values())) for feed in feeds]
        with tempfile.TemporaryDirectory(dir=self.out) as scratch:
            raw = Path(scratch) / name
            with torch.no_grad():
                torch.onnx.export(
                    module, tuple(example.values()), str(raw), input_names=list(example), output_names=outputs,
                    dynamic_axes={**dynamic, **{o: {} for o in outputs}}, opset_version=OPSET, dynamo=False,
                    do_constant_folding=True,
                )
            self._save(onnx.load(str(raw), load_external_data=False), raw.parent, path)
        self.graphs[role] = self._compare(role, path, feeds, expected, outputs)
        size = sum((self.out / n).stat().st_size for n in [name, *self.external.get(name, [])])
        self.log(f"  {name}: {size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
        return name

    def _save(self, model: onnx.ModelProto, source: Path, path: Path) -> None:
        """Write ``model`` at ``path``; weights held outside the proto (torch writes one file per tensor past 2 GB)
        are streamed one tensor at a time into a single ``<name>.data`` beside it."""
        external = [t for t in _tensors(model) if uses_external_data(t)]
        if not external and model.ByteSize() <= TWO_GB - 64 * 1024**2:
            onnx.save_model(model, str(path))
            return
        if not external:
            onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=path.name + ".data")
            self.external[path.name] = [path.name + ".data"]
            return
        data = path.name + ".data"
        offset = 0
        with open(path.parent / data, "wb") as sink:
            for tensor in external:
                info = {entry.key: entry.value for entry in tensor.external_data}
                with open(source / info["location"], "rb") as blob:
                    blob.seek(int(info.get("offset", 0)))
                    raw = blob.read(int(info["length"])) if "length" in info else blob.read()
                sink.write(b"\0" * (-offset % 4096))  # page-aligned, so the runtime can map each tensor
                offset += -offset % 4096
                sink.write(raw)
                _point_at(tensor, data, offset, len(raw))
                offset += len(raw)
        onnx.save_model(model, str(path))
        self.external[path.name] = [data]

    def _compare(
        self, role: str, path: Path, feeds: list[dict[str, torch.Tensor]], expected: list[tuple], outputs: list[str]
    ) -> dict[str, dict[str, str]]:
        """ONNX Runtime against torch on every feed; returns the graph's tensor names and types for the manifest."""
        session = ort.InferenceSession(str(path), _check_options(), providers=["CPUExecutionProvider"])
        for feed, want_all in zip(feeds, expected):
            got = session.run(outputs, {k: v.numpy() for k, v in feed.items()})
            for name, want, have in zip(outputs, want_all, got):
                want = want.numpy()
                scale = max(1.0, float(np.abs(want).max()))
                error = float(np.abs(want - have).max()) / scale
                if want.shape != have.shape or not error < 1e-4:
                    raise SystemExit(f"{role}: ONNX output {name} {have.shape} differs from torch {want.shape} (error {error:.2e})")
        return {
            "inputs": {i.name: i.type for i in session.get_inputs()},
            "outputs": {o.name: o.type for o in session.get_outputs()},
        }

    def quantize_int8(self, name: str) -> str:
        """Weight-only int8 (MatMulNBits, 8 bits, block 32) of a graph; accuracy level 4 lets the CPU kernels multiply in
        int8 (level 0, fp32 compute over dequantized weights, measured 2.8× slower for a 10 s piece)."""
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
        started = time.perf_counter()
        target = self.out / name.replace(".onnx", ".int8.onnx")
        quantizer = MatMulNBitsQuantizer(
            onnx.load(str(self.out / name)), algo_config=DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, bits=8, accuracy_level=4)
        )
        quantizer.process()
        self._save(quantizer.model.model, self.out, target)
        self.log(f"  {target.name}: {target.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
        return target.name


def _as_tuple(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Initializers and constant-node tensors of the main graph (the exported graphs have no subgraphs)."""
    return list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]


def _point_at(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    """Re-point an external tensor (its bytes not loaded) at ``location``."""
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = onnx.TensorProto.EXTERNAL


def _check_options() -> ort.SessionOptions:
    """Sessions that only check the export: no optimized copy of the weights, so a 6 GB DiT fits beside torch's."""
    options = session_options(None)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def _tokens(tokenizer: Any, text: str, limit: int) -> torch.Tensor:
    return tokenizer([text], truncation=True, max_length=limit, return_tensors="pt").input_ids


def export_checkpoint(
    checkpoint: Path, out: Path, int8: bool = True, revision: str | None = None, silence_frames: int | None = None, log=print
) -> Path:
    """Export ``checkpoint`` (a diffusers AceStepPipeline directory) into ``out``; returns the manifest's path.

    ``silence_frames`` keeps only the start of the silence latent (the runtime repeats it past its end, as diffusers
    does past the 600 s it holds); the default keeps all of it.
    """
    from diffusers import AceStepPipeline

    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # an interrupted export must not look finished
    log(f"loading {checkpoint}")
    pipe = AceStepPipeline.from_pretrained(str(checkpoint), torch_dtype=torch.float32)
    text_encoder, condition, transformer, vae = pipe.text_encoder, pipe.condition_encoder, pipe.transformer, pipe.vae
    text_encoder.set_attn_implementation("eager")
    for model in (text_encoder, condition, transformer, vae):
        model.eval()
    remove_weight_norm(vae)
    exporter = Exporter(out, log)
    hop = math.prod(vae.config.downsampling_ratios)
    sample_rate = int(vae.config.sampling_rate)
    audio_channels = int(vae.config.audio_channels)
    latent_rate = sample_rate / hop
    channels = transformer.config.audio_acoustic_hidden_dim
    patch = transformer.config.patch_size
    silence = condition.silence_latent.detach().float()
    timbre_frames = math.ceil(TIMBRE_SECONDS * latent_rate)

    text, lyric = pipe._format_prompt(prompt="slow ambient piano", lyrics=INSTRUMENTAL_LYRIC, vocal_language=VOCAL_LANGUAGE, audio_duration=30)
    ids = _tokens(pipe.tokenizer, text, 256)
    lyric_ids = _tokens(pipe.tokenizer, lyric, 2048)
    short = ids[:, : max(2, ids.shape[1] // 2)]
    log("exporting")
    files: dict[str, str] = {}
    # Each part is let go once exported, so a 24 GB machine holds at most one graph's copy beside torch's weights.
    text_graph = TextEncoderGraph(text_encoder)
    files["text_encoder"] = exporter.export(
        "text_encoder", text_graph,
        {"input_ids": ids, "attention_mask": torch.ones_like(ids), "lyric_ids": lyric_ids},
        ["last_hidden_state", "lyric_embeds"],
        {"input_ids": {1: "text_tokens"}, "attention_mask": {1: "text_tokens"}, "lyric_ids": {1: "lyric_tokens"}},
        {"input_ids": short, "attention_mask": torch.ones_like(short), "lyric_ids": lyric_ids[:, :-1]},
    )
    with torch.no_grad():
        hidden, lyric_embeds = text_graph(ids, torch.ones_like(ids), lyric_ids)
    del text_graph, text_encoder
    _release(pipe, "text_encoder")

    timbre = silence[:, :timbre_frames]
    with export_friendly(condition):
        condition_graph = ConditionEncoderGraph(condition)
        files["condition_encoder"] = exporter.export(
            "condition_encoder", condition_graph,
            {"text_hidden_states": hidden, "lyric_embeds": lyric_embeds, "timbre_latents": timbre},
            ["encoder_hidden_states"],
            {"text_hidden_states": {1: "text_tokens"}, "lyric_embeds": {1: "lyric_tokens"}, "timbre_latents": {1: "timbre_frames"}},
            {"text_hidden_states": hidden[:, :-3], "lyric_embeds": lyric_embeds[:, :-1], "timbre_latents": timbre},
        )
        with torch.no_grad():
            encoded = condition_graph(hidden, lyric_embeds, timbre)
    del condition_graph, condition
    _release(pipe, "condition_encoder")

    def dit_inputs(frames: int) -> dict[str, torch.Tensor]:
        context = torch.cat([_tile(silence, frames), torch.ones(1, frames, channels)], dim=-1)
        sigma = torch.tensor([0.75])
        return {"hidden_states": torch.randn(1, frames, channels), "timestep": sigma, "timestep_r": sigma,
                "encoder_hidden_states": encoded, "context_latents": context}

    frames = 2 * patch * max(1, transformer.config.sliding_window)  # past the sliding window, so its mask is traced
    with export_friendly(transformer):
        files["dit"] = exporter.export(
            "dit", DiTGraph(transformer), dit_inputs(frames), ["velocity"],
            {"hidden_states": {1: "frames"}, "encoder_hidden_states": {1: "condition_tokens"}, "context_latents": {1: "frames"}},
            dit_inputs(frames // 2 + patch),
        )
    del transformer
    _release(pipe, "transformer")
    files["vae_decoder"] = exporter.export(
        "vae_decoder", VaeDecoderGraph(vae), {"latents": torch.randn(1, channels, 50)}, ["audio"],
        {"latents": {2: "frames"}}, {"latents": torch.randn(1, channels, 37)},
    )
    del vae
    _release(pipe, "vae")
    variants = {"fp32": dict(files)}
    if int8:
        log("quantizing the transformers to int8 (weight-only; the VAE's convolutions stay fp32)")
        variants["int8"] = {**files, **{role: exporter.quantize_int8(files[role]) for role in ("text_encoder", "condition_encoder", "dit")}}

    pipe.tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    kept = silence[0, : max(timbre_frames, silence_frames or silence.shape[1])]
    np.save(out / "silence_latent.npy", kept.numpy().astype(np.float32))
    names = sorted({n for v in variants.values() for n in v.values()} | {d for ds in exporter.external.values() for d in ds})
    names += ["tokenizer.json", "silence_latent.npy"]
    manifest = {
        "format": FORMAT,
        "model": "ace-step-1.5-turbo",
        "source": {"checkpoint": checkpoint.name, "revision": revision or _revision(checkpoint),
                   "diffusers": _version("diffusers"), "transformers": _version("transformers"), "torch": torch.__version__},
        "sample_rate": sample_rate,
        "audio_channels": audio_channels,
        "hop_length": hop,
        "latent_rate": latent_rate,
        "latent_channels": channels,
        "patch_size": patch,
        "steps": 8,
        "shift": 3.0,
        "timbre_frames": timbre_frames,
        "max_text_tokens": 256,
        "max_lyric_tokens": 2048,
        "text_template": _template(pipe),
        "lyric": lyric,
        "tokenizer": "tokenizer.json",
        "silence_latent": "silence_latent.npy",
        "graphs": exporter.graphs,
        "variants": variants,
        "external_data": exporter.external,
        "files": {name: file_entry(out / name) for name in names},
    }
    write_json_atomic(out / MANIFEST, manifest)
    (out / MANIFEST).chmod(0o644)
    log(f"wrote {out / MANIFEST}")
    return out / MANIFEST


def _release(pipe: Any, part: str) -> None:
    """Drop the pipeline's reference to an exported part so its weights are freed."""
    setattr(pipe, part, None)
    gc.collect()


def _tile(silence: torch.Tensor, frames: int) -> torch.Tensor:
    repeats = -(-frames // silence.shape[1])
    return silence.repeat(1, repeats, 1)[:, :frames]


def _template(pipe: Any) -> str:
    """The prompt template with the pipeline's own instruction and metadata layout, `{caption}` and `{duration}` open."""
    text, _ = pipe._format_prompt(prompt="\x00caption\x00", lyrics="", audio_duration=7)
    metas = pipe._build_metadata_string(audio_duration=7)
    text = text.replace(metas, metas.replace("7 seconds", "\x00duration\x00 seconds"))
    text = text.replace("{", "{{").replace("}", "}}")
    return text.replace("\x00caption\x00", "{caption}").replace("\x00duration\x00", "{duration}")


def _revision(checkpoint: Path) -> str:
    """The Hub commit of a snapshot directory (`…/snapshots/<sha>`), else the newest file time."""
    for part in reversed(checkpoint.resolve().parts):
        if len(part) == 40 and all(c in "0123456789abcdef" for c in part):
            return part
    newest = max((p.stat().st_mtime for p in checkpoint.rglob("*") if p.is_file()), default=0)
    return time.strftime("local-%Y%m%d%H%M%S", time.gmtime(newest))


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lofi_engine.dev.export_ace_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="an ACE-Step 1.5 turbo checkpoint in diffusers' layout")
    parser.add_argument("--out", type=Path, required=True, help="where the ONNX export is written")
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 weight-only variant")
    parser.add_argument("--silence-frames", type=int, help="keep only this many frames of the silence latent (default: all)")
    parser.add_argument("--revision", help="the checkpoint's revision for the manifest (default: read from the path)")
    args = parser.parse_args(argv)
    if not (args.checkpoint / "model_index.json").is_file():
        print(f"error: {args.checkpoint} is not a diffusers checkpoint (no model_index.json)", file=sys.stderr)
        return 2
    export_checkpoint(args.checkpoint, args.out, args.int8, args.revision, args.silence_frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
