"""Build MusicGen models of the real architecture with random weights, exported like `gabotechs/music_gen`.

Dev-only (needs torch, transformers 4.57, optimum-onnx 0.1.0: `make dev`). Two sizes:

* ``--size tiny``: the committed test fixtures (a few MB): the fp32 model in both decoder forms, fp16 and
  int8 variants, and reference outputs of transformers' own ``MusicgenForConditionalGeneration.generate``.
* ``--size full``: the musicgen-small architecture (587 M parameters) for benchmarks, never committed.

Each variant directory holds the Hub's file names, so ``lofi_engine.MusicGen.load(dir)`` reads it as it reads a
download.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

SEED = 1234
PROMPT = "lofi hip hop, jazzy piano"
CONTINUATION_PROMPT_FRAMES = 50
CONTINUATION_NEW_FRAMES = 100
REFERENCE_FRAMES = 250  # 5 s, the shortest duration the engine accepts

SIZES = {
    "tiny": dict(
        text=dict(vocab_size=512, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4),
        decoder=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64),
        encodec=dict(hidden_size=16, num_filters=4, codebook_dim=16, num_lstm_layers=1),
        init=0.5,
    ),
    "full": dict(
        text=dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12),
        decoder=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, ffn_dim=4096),
        encodec=dict(hidden_size=128, num_filters=64, codebook_dim=128, num_lstm_layers=2),
        init=0.02,
    ),
}

TOKENIZER_CORPUS = [
    "lofi hip hop, jazzy piano, mellow beats to relax and study to",
    "slow ambient piano with soft rain and warm vinyl crackle",
    "upbeat synthwave with driving drums and retro bass",
    "acoustic guitar folk ballad, gentle and calm",
    "chill jazz trio with brushed drums, upright bass and electric piano",
    "cinematic orchestral strings, epic and emotional",
    "deep house groove with a punchy kick and airy pads",
    "classical music, a quiet string quartet in a minor key",
    "80s pop track with bassy drums and synth",
    "90s rock song with loud guitars and heavy drums",
    "a light and cheerly EDM track, with syncopated drums, aery pads, and strong emotions",
    "relaxing bossa nova with nylon guitar and a soft saxophone melody",
]


def build_tokenizer(out: Path) -> None:
    """A small T5-style SentencePiece Unigram tokenizer: pad 0, </s> 1, <unk> 2, `</s>` appended."""
    from tokenizers import SentencePieceUnigramTokenizer, processors

    tok = SentencePieceUnigramTokenizer()
    tok.train_from_iterator(
        TOKENIZER_CORPUS * 4, vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.save(str(out))


def build_model(size: str):
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    spec = SIZES[size]
    torch.manual_seed(SEED)
    text = T5Config(
        **spec["text"],
        relative_attention_num_buckets=32,
        feed_forward_proj="relu",
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=2048,
        max_position_embeddings=2048,
        num_codebooks=4,
        audio_channels=1,
        pad_token_id=2048,
        bos_token_id=2048,
        decoder_start_token_id=2048,
        initializer_factor=spec["init"],
        **spec["decoder"],
    )
    encodec = EncodecConfig(
        sampling_rate=32000,
        audio_channels=1,
        codebook_size=2048,
        target_bandwidths=[2.2],
        upsampling_ratios=[8, 5, 4, 4],
        normalize=False,
        chunk_length_s=None,
        overlap=None,
        use_causal_conv=False,
        compress=2,
        **spec["encodec"],
    )
    config = MusicgenConfig.from_sub_models_config(text, encodec, decoder)
    config.decoder_start_token_id = 2048
    config.pad_token_id = 2048
    model = MusicgenForConditionalGeneration(config).eval()
    # transformers leaves EnCodec's codebooks at zero: decoded audio would not depend on the codes at all.
    generator = torch.Generator().manual_seed(SEED + 1)
    for layer in model.audio_encoder.quantizer.layers:
        embed = layer.codebook.embed
        embed.copy_(torch.randn(embed.shape, generator=generator))
    gen = model.generation_config
    gen.do_sample = True
    gen.guidance_scale = 3.0
    gen.top_k = 250
    gen.max_length = 1500
    gen.decoder_start_token_id = 2048
    gen.pad_token_id = 2048
    gen.bos_token_id = 2048
    return model


def export(model, hf_dir: Path, out: Path) -> None:
    """Save the transformers checkpoint to ``hf_dir``, export it with optimum-onnx exactly like the published
    files, then merge the decoders ourselves."""
    from optimum.exporters.onnx import main_export
    from optimum.onnx import merge_decoders

    model.save_pretrained(hf_dir)
    main_export(str(hf_dir), str(out), task="text-to-audio", do_validation=False)
    merge_decoders(
        out / "decoder_model.onnx",
        out / "decoder_with_past_model.onnx",
        save_path=str(out / "decoder_model_merged.onnx"),
        strict=False,
    )
    (out / "build_delay_pattern_mask.onnx").unlink(missing_ok=True)
    for extra in out.glob("*.onnx_data"):
        raise SystemExit(f"unexpected external data {extra}: the fixture must be self-contained")


def make_int8(src: Path, out: Path, work: Path) -> None:
    """int8 as published: quantize the split decoders (quantizing the merged file does nothing), then merge."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from optimum.onnx import merge_decoders

    out.mkdir(parents=True, exist_ok=True)
    for name in ("decoder_model.onnx", "decoder_with_past_model.onnx"):
        quantize_dynamic(src / name, work / name, weight_type=QuantType.QInt8)
    merge_decoders(
        work / "decoder_model.onnx",
        work / "decoder_with_past_model.onnx",
        save_path=str(out / "decoder_model_merged.onnx"),
        strict=False,
    )
    for name in ("config.json", "generation_config.json", "tokenizer.json", "text_encoder.onnx", "encodec_decode.onnx"):
        shutil.copy(src / name, out / name)


def make_fp16(src: Path, out: Path) -> None:
    """fp16 as published: float16 inputs and outputs, split decoders only (no merged file)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out.mkdir(parents=True, exist_ok=True)
    for name in ("text_encoder.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx", "encodec_decode.onnx"):
        model = onnx.load(src / name)
        onnx.save(convert_float_to_float16(model, keep_io_types=False, disable_shape_infer=True), out / name)
    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        shutil.copy(src / name, out / name)


def capture_decodes(model) -> tuple[list, Any]:
    """Every code tensor the model's EnCodec decodes from now on (what ``generate`` composed, prompt included) is
    appended to the list returned, with EnCodec's own ``decode`` (to put back)."""
    captured: list[torch.Tensor] = []
    decode = model.audio_encoder.decode

    def capture(audio_codes, *args, **kwargs):
        captured.append(audio_codes.clone())
        return decode(audio_codes, *args, **kwargs)

    model.audio_encoder.decode = capture
    return captured, decode


def reference_outputs(model, tokenizer_path: Path, out: Path) -> None:
    """transformers' own generate, greedy, guidance 3.0 and 1.0, and a greedy continuation from codes."""
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(tokenizer_path)).encode(PROMPT).ids
    input_ids = torch.tensor([ids])
    mask = torch.ones_like(input_ids)
    captured, decode = capture_decodes(model)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"prompt": PROMPT, "input_ids": ids, "cases": {}}
    with torch.no_grad():
        for guidance in (3.0, 1.0):
            audio = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                do_sample=False,
                guidance_scale=guidance,
                max_new_tokens=REFERENCE_FRAMES + 3,
            )
            name = f"greedy_g{guidance:g}"
            np.save(out / f"{name}_codes.npy", captured[-1][0, 0].numpy().astype(np.int64))
            np.save(out / f"{name}_audio.npy", audio[0, 0].numpy().astype(np.float32))
            meta["cases"][name] = {"guidance_scale": guidance, "frames": REFERENCE_FRAMES}
        prompt_codes = captured[-1][0, 0, :, :CONTINUATION_PROMPT_FRAMES]
        decoder_input_ids = torch.cat([torch.full((4, 1), 2048), prompt_codes], dim=1)
        model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            decoder_input_ids=decoder_input_ids,
            do_sample=False,
            guidance_scale=1.0,
            max_new_tokens=CONTINUATION_NEW_FRAMES + 3,
        )
        np.save(out / "continuation_g1_codes.npy", captured[-1][0, 0].numpy().astype(np.int64))
        meta["cases"]["continuation_g1"] = {
            "guidance_scale": 1.0,
            "prompt_frames": CONTINUATION_PROMPT_FRAMES,
            "new_frames": CONTINUATION_NEW_FRAMES,
        }
    model.audio_encoder.decode = decode
    (out / "reference.json").write_text(json.dumps(meta, indent=2) + "\n")


ENCODEC_SECONDS = (1.0, 1.3)
"""Lengths of the encoder's references: a whole number of frames, and one that is not (the engine drops the first
samples that do not fill a frame)."""


def write_encodec(model, out: Path, reference: Path) -> None:
    """MusicGen's own EnCodec (the one whose decoder the fixture's ``encodec_decode.onnx`` is) as the Hub lays out
    ``facebook/encodec_32khz``: ``config.json`` + ``model.safetensors``, the latter holding only what encoding reads
    (the encoder and the codebooks: the fixtures stay small); and transformers' ``EncodecModel.encode`` of noise and
    a tone (stored as float16, encoded as float32), the codes the engine's encoder must give exactly."""
    from safetensors.torch import save_file

    encodec = model.audio_encoder
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    encodec.config.to_json_file(out / "config.json")
    kept = {k: v.contiguous() for k, v in encodec.state_dict().items() if k.startswith("encoder.") or k.endswith("codebook.embed")}
    save_file(kept, out / "model.safetensors", metadata={"format": "pt"})
    rate, arrays = encodec.config.sampling_rate, {}
    rng = np.random.default_rng(SEED)
    for seconds in ENCODEC_SECONDS:
        samples = int(seconds * rate)
        t = np.arange(samples) / rate
        for kind, audio in (("noise", 0.3 * rng.standard_normal(samples)), ("tone", 0.5 * np.sin(2 * np.pi * 220 * t))):
            stored = audio.astype(np.float16)
            with torch.no_grad():
                codes = encodec.encode(torch.from_numpy(stored.astype(np.float32))[None, None], bandwidth=2.2).audio_codes[0, 0].numpy()
            name = f"{kind}_{seconds:g}s"
            arrays[f"{name}_audio"], arrays[f"{name}_codes"] = stored, codes.astype(np.int64)
    reference.mkdir(parents=True, exist_ok=True)
    np.savez(reference / "encodec.npz", **arrays)


AUDIO_PROMPT_NEW_FRAMES = 250


def audio_prompt_reference(model, tokenizer_path: Path, reference: Path) -> None:
    """transformers' ``generate(input_values=…)``: greedy, guidance 3.0, continuing the 1 s tone of ``encodec.npz``
    by 5 s; the codes it decodes (the tone's own codes first, as it returns them)."""
    from tokenizers import Tokenizer

    ids = torch.tensor([Tokenizer.from_file(str(tokenizer_path)).encode(PROMPT).ids])
    audio = torch.from_numpy(np.load(reference / "encodec.npz")["tone_1s_audio"].astype(np.float32))[None, None]
    captured, decode = capture_decodes(model)
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), input_values=audio, padding_mask=torch.ones(1, audio.shape[-1], dtype=torch.long),
                       do_sample=False, guidance_scale=3.0, max_new_tokens=AUDIO_PROMPT_NEW_FRAMES + 3)
    model.audio_encoder.decode = decode
    np.save(reference / "audio_prompt_g3_codes.npy", captured[-1][0, 0].numpy().astype(np.int64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--out", type=Path, required=True, help="parent directory of the variant directories")
    args = parser.parse_args()

    name = f"musicgen-{args.size}"
    fp32 = args.out / name
    shutil.rmtree(fp32, ignore_errors=True)
    fp32.mkdir(parents=True)
    model = build_model(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # The benchmark runs transformers on the very same weights: keep the checkpoint for full-size models.
        hf_dir = args.out / f"{name}-transformers" if args.size == "full" else work / "hf"
        shutil.rmtree(hf_dir, ignore_errors=True)
        export(model, hf_dir, fp32)
        build_tokenizer(fp32 / "tokenizer.json")
        make_int8(fp32, args.out / f"{name}-int8", work)
    if args.size == "tiny":
        make_fp16(fp32, args.out / f"{name}-fp16")
        reference_outputs(model, fp32 / "tokenizer.json", args.out / f"{name}-reference")
        write_encodec(model, args.out / "encodec-tiny", args.out / f"{name}-reference")
        audio_prompt_reference(model, fp32 / "tokenizer.json", args.out / f"{name}-reference")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
