"""Build ACE-Step 1.5 turbo parts of the real architecture with random weights and export them with the export tool.

Dev-only (torch, diffusers 0.42, transformers 5.x: `make ace-dev`). Two sizes:

* ``--size tiny``: the committed fixtures: ``ace-step-tiny/`` (written by ``lofi_engine.export.ace_step`` from a
  diffusers checkpoint saved here, so the tool itself is exercised) and ``ace-step-tiny-reference/reference.npz``,
  diffusers' own ``AceStepPipeline`` run on the same parts with fixed noise.
* ``--size full``: the real 1.5 turbo DiT (24 layers, hidden 2048, ≈ 1.6 B parameters; fp32 and int8) and the
  VAE decoder at their real sizes, exported to ONNX for `make bench-ace-step`; never committed.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lofi_engine.export.ace_step import DiTGraph, Exporter, VaeDecoderGraph, export_checkpoint, export_friendly, remove_weight_norm

SEED = 1234
PROMPT = "slow ambient piano"
REFERENCES = {"even": 10.0, "odd": 10.5}  # 250 and 263 latent frames: the odd one takes the host's padding path
AUDIO_STRIDE = 16
"""The reference keeps every 16th audio sample: the chunk boundary of the decode is covered at a sixteenth of the size."""
TINY_SILENCE_FRAMES = 1000

TOKENIZER_CORPUS = [
    "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n# Caption\n",
    "# Metas\n- bpm: N/A\n- timesignature: N/A\n- keyscale: N/A\n- duration: 30 seconds\n",
    "# Languages\nen\n\n# Lyric\n[inst]",
    "slow ambient piano with soft rain and warm vinyl crackle",
    "lofi hip hop, jazzy piano, mellow beats to relax and study to",
    "upbeat synthwave with driving drums and retro bass",
    "chill jazz trio with brushed drums, upright bass and electric piano",
    "0123456789 seconds",
]

TINY = dict(heads=4, kv_heads=2, head_dim=8, hidden=32, intermediate=64, layers=2, sliding_window=16)
FULL_DIT = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=24, num_attention_heads=16,
                num_key_value_heads=8, head_dim=128, sliding_window=128)
FULL_VAE = dict(encoder_hidden_size=128, downsampling_ratios=[2, 4, 4, 6, 10], channel_multiples=[1, 2, 4, 8, 16],
                decoder_channels=128, decoder_input_channels=64, audio_channels=2, sampling_rate=48000)


def build_tokenizer():
    """A byte-level BPE tokenizer standing in for Qwen's (same kind, no added BOS/EOS, `<|endoftext|>` special)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TOKENIZER_CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def build_tiny_pipeline():
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import AceStepConditionEncoder
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(SEED)
    tokenizer = build_tokenizer()
    t = TINY
    text_encoder = Qwen3Model(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=t["hidden"], intermediate_size=t["intermediate"], num_hidden_layers=t["layers"],
        num_attention_heads=t["heads"], num_key_value_heads=t["kv_heads"], head_dim=t["head_dim"], max_position_embeddings=4096,
    ))
    shared = dict(hidden_size=t["hidden"], intermediate_size=t["intermediate"], num_attention_heads=t["heads"],
                  num_key_value_heads=t["kv_heads"], head_dim=t["head_dim"], sliding_window=t["sliding_window"])
    condition = AceStepConditionEncoder(text_hidden_dim=t["hidden"], timbre_hidden_dim=64, num_lyric_encoder_hidden_layers=2,
                                        num_timbre_encoder_hidden_layers=2, **shared)
    condition.silence_latent.normal_()  # the converter fills it with encoded silence; any values exercise the same path
    transformer = AceStepTransformer1DModel(num_hidden_layers=t["layers"], in_channels=192, audio_acoustic_hidden_dim=64,
                                            patch_size=2, is_turbo=True, model_version="turbo", **shared)
    vae = AutoencoderOobleck(encoder_hidden_size=128, downsampling_ratios=[2, 4, 4, 6, 10], channel_multiples=[1, 2, 4, 8, 16],
                             decoder_channels=2, decoder_input_channels=64, audio_channels=2, sampling_rate=48000)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    return AceStepPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                           condition_encoder=condition, scheduler=scheduler)


def write_reference(pipe, out: Path) -> None:
    """diffusers' own pipeline on the saved parts: noise in, latents and audio out, for each reference duration."""
    arrays: dict[str, np.ndarray] = {"prompt": np.array(PROMPT), "audio_stride": np.array(AUDIO_STRIDE)}
    for name, duration in REFERENCES.items():
        frames = int(np.ceil(duration * pipe.latents_per_second))
        noise = np.random.default_rng(SEED).standard_normal((1, frames, 64), dtype=np.float32)
        common = dict(prompt=PROMPT, lyrics="[inst]", audio_duration=duration, num_inference_steps=8, shift=3.0,
                      latents=torch.from_numpy(noise))
        latents = pipe(**common, output_type="latent", return_dict=False)[0]
        audio = pipe(**common, output_type="np", return_dict=False)[0]
        arrays[f"{name}_duration"] = np.array(duration)
        arrays[f"{name}_noise"] = noise[0]
        arrays[f"{name}_latents"] = latents[0].numpy()
        if name == "odd":  # 263 frames: two decode chunks, so the reference covers a chunk boundary
            arrays[f"{name}_audio"] = audio[0][:, ::AUDIO_STRIDE].astype(np.float32)
            arrays[f"{name}_audio_samples"] = np.array(audio.shape[-1])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "reference.npz", **arrays)


def build_tiny(out: Path) -> None:
    pipe = build_tiny_pipeline()
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(scratch) / "acestep-v15-turbo-tiny"
        pipe.save_pretrained(str(checkpoint))
        export_checkpoint(checkpoint, out / "ace-step-tiny", int8=True, revision="tiny-random", silence_frames=TINY_SILENCE_FRAMES)
        from diffusers import AceStepPipeline

        saved = AceStepPipeline.from_pretrained(str(checkpoint), torch_dtype=torch.float32)
    write_reference(saved, out / "ace-step-tiny-reference")


def build_full(out: Path) -> None:
    """The full-size DiT (fp32 and int8 weight-only) and VAE decoder, random weights, exported as the tool exports
    them, for `make bench-ace-step`."""
    out.mkdir(parents=True, exist_ok=True)
    exporter = Exporter(out)
    export_full_dit(exporter)
    gc.collect()
    exporter.quantize_int8("dit.onnx")
    export_full_vae(exporter)
    print(f"wrote {out}")


def export_full_dit(exporter: "Exporter") -> None:
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel

    torch.manual_seed(SEED)
    started = time.perf_counter()
    transformer = AceStepTransformer1DModel(in_channels=192, audio_acoustic_hidden_dim=64, patch_size=2, is_turbo=True,
                                            model_version="turbo", **FULL_DIT).eval()
    print(f"built the DiT ({sum(p.numel() for p in transformer.parameters()) / 1e9:.3f} B parameters) in {time.perf_counter() - started:.0f} s")
    frames = 2 * 2 * FULL_DIT["sliding_window"]

    def inputs(n: int) -> dict[str, torch.Tensor]:
        sigma = torch.tensor([0.75])
        return {"hidden_states": torch.randn(1, n, 64), "timestep": sigma, "timestep_r": sigma,
                "encoder_hidden_states": torch.randn(1, 40, FULL_DIT["hidden_size"]), "context_latents": torch.randn(1, n, 128)}

    with export_friendly(transformer):
        exporter.export("dit", DiTGraph(transformer), inputs(frames), ["velocity"],
                        {"hidden_states": {1: "frames"}, "encoder_hidden_states": {1: "condition_tokens"}, "context_latents": {1: "frames"}},
                        inputs(frames // 2 + 2))


def export_full_vae(exporter: "Exporter") -> None:
    from diffusers import AutoencoderOobleck

    vae = AutoencoderOobleck(**FULL_VAE).eval()
    remove_weight_norm(vae)
    print(f"built the VAE decoder ({sum(p.numel() for p in vae.decoder.parameters()) / 1e6:.1f} M parameters)")
    exporter.export("vae_decoder", VaeDecoderGraph(vae), {"latents": torch.randn(1, 64, 50)}, ["audio"],
                    {"latents": {2: "frames"}}, {"latents": torch.randn(1, 64, 37)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.size == "tiny":
        build_tiny(args.out)
    else:
        build_full(args.out / "ace-step-full")


if __name__ == "__main__":
    main()
