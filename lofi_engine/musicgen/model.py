"""MusicGen on ONNX Runtime: text prompt in, mono 32 kHz audio out, token for token as transformers generates."""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from lofi_engine.store import musicgen_files as files
from lofi_engine.musicgen.decoder import DECODER_INPUTS, WITH_PAST_INPUTS, CachedDecoder
from lofi_engine.musicgen.delay_pattern import PREDICTED, build_pattern, undelay, window_length
from lofi_engine.shared.errors import MODEL_INFERENCE_FAILED, MODEL_LOAD_FAILED, LofiError
from lofi_engine.inference.session import is_int8, run
from lofi_engine.inference.optimized_graphs import open_optimized
from lofi_engine.shared.eta import EtaEstimator
from lofi_engine.inference.providers import providers_for
from lofi_engine.musicgen.sampling import TokenSampler
from lofi_engine.musicgen.streaming import AudioStreamer, ChunkCallback
from lofi_engine.shared.request import MAX_SEED, check_duration, check_prompt, check_sampling, check_seed

WINDOW_SEC = 30.0
"""Audio generated per decoder window; the decoder's 2048 positions hold ≈ 41 s."""
CONTEXT_SEC = 12.0
"""Codes carried from one window into the next as its prompt (audiocraft's 30 s window, 18 s stride)."""

StepCallback = Callable[[int, int], None]
LoadCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ModelSettings:
    """What the engine needs from `config.json` and `generation_config.json`."""

    num_codebooks: int
    pad_token: int
    max_positions: int
    sample_rate: int
    hop_length: int
    top_k: int
    temperature: float
    guidance_scale: float
    size: str

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @classmethod
    def read(cls, model_dir: Path) -> "ModelSettings":
        config = _read_json(model_dir / files.CONFIG)
        generation = _read_json(model_dir / files.GENERATION_CONFIG)
        try:
            decoder, codec = config["decoder"], config["audio_encoder"]
            return cls(
                num_codebooks=int(decoder["num_codebooks"]),
                pad_token=int(generation.get("pad_token_id", decoder.get("pad_token_id", 2048))),
                max_positions=int(decoder["max_position_embeddings"]),
                sample_rate=int(codec["sampling_rate"]),
                hop_length=math.prod(int(r) for r in codec["upsampling_ratios"]),
                top_k=int(generation.get("top_k", 250)),
                temperature=float(generation.get("temperature", 1.0)),
                guidance_scale=float(generation.get("guidance_scale", 3.0)),
                size=_size_name(int(decoder["hidden_size"]), int(decoder["num_hidden_layers"])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LofiError(MODEL_LOAD_FAILED, f"{model_dir / files.CONFIG} is not a MusicGen config: {exc!r}") from None


@dataclass(frozen=True)
class Window:
    """One decoder pass: continue ``prompt_frames`` of earlier codes by ``new_frames``."""

    prompt_frames: int
    new_frames: int
    steps: int

    @property
    def cache_positions(self) -> range:
        """Key/value cache length at each step (a step's cost grows with it)."""
        return range(self.prompt_frames + 1, self.prompt_frames + 1 + self.steps)


@dataclass
class Generation:
    audio: np.ndarray
    """float32 mono samples."""
    sample_rate: int
    codes: np.ndarray
    """int64 ``[codebooks, frames]``."""
    seed: int
    duration_sec: float
    generation_time_sec: float
    prompt: str
    model_version: str
    backend: str = "musicgen"


@dataclass
class MusicGen:
    """The three ONNX sessions of MusicGen and the tokenizer; build with :meth:`load`."""

    tokenizer: Tokenizer
    text_encoder: ort.InferenceSession
    decoder: CachedDecoder
    audio_decoder: ort.InferenceSession
    settings: ModelSettings
    model_version: str

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "auto",
        threads: int | None = None,
        decoder: str = "auto",
        model_version: str | None = None,
        on_progress: LoadCallback | None = None,
        optimized_cache: str | Path | None = None,
    ) -> "MusicGen":
        """Open a model directory laid out like the Hub's (fp32, fp16 or int8 files; merged or split decoder).

        ``on_progress(file_name, bytes_loaded, bytes_total)`` is called as each ONNX file is opened.
        ``optimized_cache``: a directory where ONNX Runtime's optimized graphs are kept so later loads are faster.
        """
        model_dir = Path(model_dir).expanduser()
        form = files.choose_decoder_form(model_dir, decoder)
        files.check_present(model_dir, form)
        providers = providers_for(device)
        cache = Path(optimized_cache).expanduser() if optimized_cache is not None else None
        settings = ModelSettings.read(model_dir)
        try:
            tokenizer = Tokenizer.from_file(str(model_dir / files.TOKENIZER))
        except Exception as exc:
            raise LofiError(MODEL_LOAD_FAILED, f"cannot read {model_dir / files.TOKENIZER}: {exc}") from None

        graphs = {files.TEXT_ENCODER: ("input_ids", "attention_mask"), files.AUDIO_DECODER: ("audio_codes",)}
        if form == "merged":
            graphs[files.DECODER_MERGED] = (*DECODER_INPUTS, "use_cache_branch")
        else:
            graphs.update({files.DECODER: DECODER_INPUTS, files.DECODER_WITH_PAST: WITH_PAST_INPUTS})
        sizes = {name: (model_dir / name).stat().st_size for name in graphs}
        sessions: dict[str, ort.InferenceSession] = {}
        for name, inputs in graphs.items():
            sessions[name] = open_optimized(model_dir / name, threads, providers, inputs, cache)
            if on_progress is not None:
                on_progress(name, sum(sizes[n] for n in sessions), sum(sizes.values()))

        if form == "merged":
            cached = CachedDecoder(sessions[files.DECODER_MERGED], sessions[files.DECODER_MERGED])
        else:
            cached = CachedDecoder(sessions[files.DECODER], sessions[files.DECODER_WITH_PAST])
        if model_version is None:
            decoder_file = model_dir / files.DECODER_FORMS[form][0]
            precision = "fp16" if cached.dtype == np.float16 else "int8" if is_int8(decoder_file) else "fp32"
            model_version = f"musicgen-{settings.size}-{precision}-v1"
        return cls(tokenizer, sessions[files.TEXT_ENCODER], cached, sessions[files.AUDIO_DECODER], settings, model_version)

    @property
    def sample_rate(self) -> int:
        return self.settings.sample_rate

    def progress_model(self, duration_sec: float) -> EtaEstimator:
        """One unit of work per decoder step, its cost growing with the cache position it reads."""
        return EtaEstimator([p for w in self.plan(duration_sec) for p in w.cache_positions])

    def plan(self, duration_sec: float) -> list[Window]:
        """The decoder windows that make ``duration_sec`` of audio; their steps sum to the job's total work."""
        rate = self.settings.frame_rate
        total = round(duration_sec * rate)
        window, context = round(WINDOW_SEC * rate), round(CONTEXT_SEC * rate)
        delay = self.settings.num_codebooks - 1
        windows = [Window(0, min(total, window), min(total, window) + delay)]
        done = windows[0].new_frames
        while done < total:
            new = min(window - context, total - done)
            windows.append(Window(context, new, new + delay))
            done += new
        return windows

    def generate(
        self,
        prompt: str,
        duration_sec: float = 30,
        seed: int | None = None,
        top_k: int | None = None,
        temperature: float = 1.0,
        guidance_scale: float | None = None,
        on_step: StepCallback | None = None,
        on_chunk: ChunkCallback | None = None,
    ) -> Generation:
        """Compose ``duration_sec`` of music; the same arguments and seed give bit-identical audio.

        ``on_step(done, total)`` follows every decoder step; ``on_chunk(samples, first_sample)`` receives playable
        audio every 2 s of finished frames, long before the track is done (the last chunk comes from the final decode).
        """
        started = time.perf_counter()
        check_prompt(prompt)
        duration_sec = check_duration(duration_sec)
        seed = check_seed(seed)
        top_k = self.settings.top_k if top_k is None else top_k
        guidance_scale = self.settings.guidance_scale if guidance_scale is None else guidance_scale
        check_sampling(top_k, temperature, guidance_scale)
        if seed is None:
            seed = secrets.randbelow(MAX_SEED + 1)
        sampler = TokenSampler(np.random.default_rng(seed), int(top_k), float(temperature), float(guidance_scale))

        hidden, mask = self.encode_text(prompt, sampler.uses_guidance)
        windows = self.plan(duration_sec)
        estimated = sum(w.steps for w in windows)
        done = 0
        streamer = None if on_chunk is None else AudioStreamer(self.decode_audio, self.settings.hop_length, on_chunk)
        codes = np.zeros((self.settings.num_codebooks, 0), dtype=np.int64)

        for window in windows:
            before = codes

            def step(complete: int, finished: Callable[[], np.ndarray], before: np.ndarray = before, window: Window = window) -> None:
                nonlocal done
                done += 1
                if on_step is not None:
                    on_step(done, estimated)
                if streamer is not None:
                    streamer.feed(
                        before.shape[1] + max(0, complete - window.prompt_frames),
                        lambda: np.concatenate([before, finished()[:, window.prompt_frames :]], axis=1),
                    )

            prompt_codes = before[:, before.shape[1] - window.prompt_frames :]
            produced = self.continue_codes(prompt_codes, window.new_frames, hidden, mask, sampler, step)
            codes = np.concatenate([before, produced[:, window.prompt_frames :]], axis=1)
        audio = self.decode_audio(codes)
        if streamer is not None:
            streamer.finish(audio)
        return Generation(
            audio=audio,
            sample_rate=self.settings.sample_rate,
            codes=codes,
            seed=seed,
            duration_sec=duration_sec,
            generation_time_sec=time.perf_counter() - started,
            prompt=prompt,
            model_version=self.model_version,
        )

    def encode_text(self, prompt: str, guidance: bool) -> tuple[np.ndarray, np.ndarray]:
        """T5 hidden states and mask; with guidance the unconditional half is all zeros (not an empty prompt)."""
        ids = np.array([self.tokenizer.encode(prompt).ids], dtype=np.int64)
        mask = np.ones_like(ids)
        hidden = run(self.text_encoder, {"input_ids": ids, "attention_mask": mask}, "text encoder")[0]
        if guidance:
            hidden = np.concatenate([hidden, np.zeros_like(hidden)])
            mask = np.concatenate([mask, np.zeros_like(mask)])
        return hidden, mask

    def continue_codes(
        self,
        prompt: np.ndarray,
        new_frames: int,
        hidden: np.ndarray,
        mask: np.ndarray,
        sampler: TokenSampler,
        on_step: Callable[[int, Callable[[], np.ndarray]], None],
    ) -> np.ndarray:
        """Continue undelayed ``prompt`` codes ``[codebooks, F]`` by ``new_frames``; returns all F + new frames.

        The prompt is prefilled in one decoder call from an empty cache, then one token is fed a step.
        ``on_step(complete, finished)`` follows each step: ``complete`` frames of the window are finished and
        ``finished()`` returns them.
        """
        codebooks, prompt_frames = prompt.shape
        length = window_length(prompt_frames, new_frames, codebooks)
        if length > self.settings.max_positions:
            raise LofiError(MODEL_INFERENCE_FAILED, f"a window of {length} positions exceeds the decoder's {self.settings.max_positions}")
        pattern = build_pattern(prompt, length, self.settings.pad_token)
        grid = pattern.copy()
        rows = hidden.shape[0]
        filled = prompt_frames + 1
        logits = self.decoder.start(np.tile(grid[:, :filled], (rows, 1)), hidden, mask, capacity=length)
        for position in range(filled, length):
            tokens = sampler(logits)
            forced = pattern[:, position]
            grid[:, position] = np.where(forced == PREDICTED, tokens, forced)
            if position + 1 < length:
                logits = self.decoder.step(np.tile(grid[:, position : position + 1], (rows, 1)))
            complete = max(0, min(position - codebooks + 1, prompt_frames + new_frames))
            on_step(complete, lambda complete=complete: undelay(grid, complete))
        return undelay(grid, prompt_frames + new_frames)

    def decode_audio(self, codes: np.ndarray) -> np.ndarray:
        """EnCodec: codes ``[codebooks, frames]`` to float32 samples (``frames × hop``)."""
        audio = run(self.audio_decoder, {"audio_codes": codes[None, None].astype(np.int64)}, "audio decoder")[0]
        audio = audio.reshape(-1).astype(np.float32)
        if not np.isfinite(audio).all():
            raise LofiError(MODEL_INFERENCE_FAILED, "the audio decoder produced NaN or infinite samples")
        return audio


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LofiError(MODEL_LOAD_FAILED, f"cannot read {path}: {exc}") from None


def _size_name(hidden: int, layers: int) -> str:
    return {(1024, 24): "small", (1536, 48): "medium", (2048, 48): "large"}.get((hidden, layers), f"custom{hidden}x{layers}")
