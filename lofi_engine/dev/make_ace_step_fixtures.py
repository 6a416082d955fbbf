"""Build ACE-Step 1.5 turbo parts of the real architecture with random weights and export them with the export tool.

Dev-only (torch, diffusers 0.42, transformers 5.x: `make ace-dev`). Two sizes:

* ``--size tiny``: the committed fixtures: ``ace-step-tiny/`` (written by ``lofi_engine.dev.export_ace_step`` from a
  diffusers checkpoint saved here, so the tool itself is exercised) and ``ace-step-tiny-reference/reference.npz``,
  diffusers' own ``AceStepPipeline`` run on the same parts with fixed noise.
* ``--size full``: every part at its real size (Qwen3-Embedding-0.6B, the 1.5 turbo condition encoder and DiT,
  the VAE), saved as a diffusers checkpoint and exported with the tool, for `make bench-ace-step`; never committed.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lofi_engine.dev.export_ace_step import export_checkpoint

SEED = 1234
PROMPT = "slow ambient piano"
REFERENCES = {"even": 10.0, "odd": 10.5}  # 250 and 263 latent frames: the odd one takes the host's padding path
MUSIC = {"bpm": 80, "keyscale": "C minor", "timesignature": "3"}
"""The musical controls of the "music" reference (10 s): diffusers' own metadata conditioning."""
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

SIZES = {
    "tiny": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8),
        vocab_size=None,  # the tiny tokenizer's
        condition=dict(hidden_size=32, intermediate_size=64, text_hidden_dim=32, num_lyric_encoder_hidden_layers=2,
                       num_timbre_encoder_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=16),
        dit=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 head_dim=8, sliding_window=16),
        vae_channels=2,
    ),
    "full": dict(  # Qwen3-Embedding-0.6B, and diffusers' defaults for the 1.5 turbo condition encoder and DiT
        text=dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128),
        vocab_size=151669,
        condition=dict(),
        dit=dict(),
        vae_channels=128,
    ),
}


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


def build_pipeline(size: str):
    """Every part of an ACE-Step 1.5 turbo pipeline at ``size``, random weights (seeded)."""
    from diffusers import (
        AceStepPipeline,
        AutoencoderOobleck,
        FlowMatchEulerDiscreteScheduler,
    )
    from diffusers.models.transformers.ace_step_transformer import (
        AceStepTransformer1DModel,
    )
    from diffusers.pipelines.ace_step.modeling_ace_step import AceStepConditionEncoder
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(SEED)
    tokenizer = build_tokenizer()
    sizes = SIZES[size]
    text_encoder = Qwen3Model(Qwen3Config(vocab_size=sizes["vocab_size"] or len(tokenizer), max_position_embeddings=4096, **sizes["text"]))
    condition = AceStepConditionEncoder(timbre_hidden_dim=64, **sizes["condition"])
    condition.silence_latent.normal_()  # the converter fills it with encoded silence; any values exercise the same path
    transformer = AceStepTransformer1DModel(in_channels=192, audio_acoustic_hidden_dim=64, patch_size=2, is_turbo=True,
                                            model_version="turbo", **sizes["dit"])
    vae = AutoencoderOobleck(encoder_hidden_size=128, downsampling_ratios=[2, 4, 4, 6, 10], channel_multiples=[1, 2, 4, 8, 16],
                             decoder_channels=sizes["vae_channels"], decoder_input_channels=64, audio_channels=2, sampling_rate=48000)
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
    duration = REFERENCES["even"]  # tempo, key and time signature, the way the pipeline conditions on them
    noise = np.random.default_rng(SEED + 1).standard_normal((1, int(np.ceil(duration * pipe.latents_per_second)), 64), dtype=np.float32)
    latents = pipe(prompt=PROMPT, lyrics="[inst]", audio_duration=duration, num_inference_steps=8, shift=3.0, latents=torch.from_numpy(noise),
                   **MUSIC, output_type="latent", return_dict=False)[0]
    arrays.update({"music_duration": np.array(duration), "music_noise": noise[0], "music_latents": latents[0].numpy(),
                   **{f"music_{k}": np.array(v) for k, v in MUSIC.items()}})
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "reference.npz", **arrays)


def build_tiny(out: Path) -> None:
    pipe = build_pipeline("tiny")
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(scratch) / "acestep-v15-turbo-tiny"
        pipe.save_pretrained(str(checkpoint))
        export_checkpoint(checkpoint, out / "ace-step-tiny", int8=True, revision="tiny-random", silence_frames=TINY_SILENCE_FRAMES)
        from diffusers import AceStepPipeline

        saved = AceStepPipeline.from_pretrained(str(checkpoint), torch_dtype=torch.float32)
    write_reference(saved, out / "ace-step-tiny-reference")


def build_full(out: Path) -> None:
    """The whole pipeline at full size (≈ 3 B parameters), saved as a diffusers checkpoint and exported with the tool,
    as a user would; the checkpoint (≈ 12 GB) is deleted afterwards."""
    started = time.perf_counter()
    pipe = build_pipeline("full")
    parts = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) / 1e9 for name in ("text_encoder", "condition_encoder", "transformer", "vae")}
    print(f"built in {time.perf_counter() - started:.0f} s: " + ", ".join(f"{k} {v:.3f} B" for k, v in parts.items()), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        checkpoint = Path(scratch) / "acestep-v15-turbo-random"
        pipe.save_pretrained(str(checkpoint))
        del pipe
        gc.collect()
        started = time.perf_counter()
        export_checkpoint(checkpoint, out, int8=True, revision="full-random")
        print(f"exported in {time.perf_counter() - started:.0f} s", flush=True)


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
