"""MusicGen on ONNX Runtime: text prompt in, mono 32 kHz audio out, token for token as transformers generates."""

from __future__ import annotations

import json
import math
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
from lofi_engine.shared.request import GenerateRequest
from lofi_engine.shared.settings import DEFAULT_DURATION_SEC

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
        """Every value checked: a missing, mistyped or nonsensical one is MODEL_LOAD_FAILED naming the file and the
        field (``LofiError.path`` is that file), never a traceback or a generation that cannot end."""
        config_path, generation_path = model_dir / files.CONFIG, model_dir / files.GENERATION_CONFIG
        config = _Fields(config_path, _read_json(config_path))
        generation = _Fields(generation_path, _read_json(generation_path))
        decoder, codec = config.section("decoder"), config.section("audio_encoder")
        num_codebooks = decoder.integer("num_codebooks", 1, 64)
        max_positions = decoder.integer("max_position_embeddings", 1, 1 << 20)
        sample_rate = codec.integer("sampling_rate", 1, 768_000)
        ratios = codec.value("upsampling_ratios")
        if not isinstance(ratios, list) or not ratios or not all(_is_int(r) and 1 <= r <= 1 << 16 for r in ratios):
            codec.fail("upsampling_ratios", "must be a non-empty list of positive integers", ratios)
        hop_length = math.prod(int(r) for r in ratios)
        if not 1 <= sample_rate / hop_length <= 1000:
            codec.fail("upsampling_ratios", f"give {sample_rate / hop_length:g} codec frames a second at sampling_rate {sample_rate} (1 to 1000 expected)", ratios)
        window = window_length(0, round(WINDOW_SEC * sample_rate / hop_length), num_codebooks)
        if window > max_positions:
            decoder.fail("max_position_embeddings", f"is too small for a {WINDOW_SEC:g} s window ({window} positions)", max_positions)
        decoder_pad = decoder.integer("pad_token_id", 0, 1 << 31, default=2048)
        return cls(
            num_codebooks=num_codebooks,
            pad_token=generation.integer("pad_token_id", 0, 1 << 31, default=decoder_pad),
            max_positions=max_positions,
            sample_rate=sample_rate,
            hop_length=hop_length,
            top_k=generation.integer("top_k", 1, 1 << 31, default=250),
            temperature=generation.number("temperature", above=0.0, default=1.0),
            guidance_scale=generation.number("guidance_scale", at_least=1.0, default=3.0),
            size=_size_name(decoder.integer("hidden_size", 1, 1 << 20), decoder.integer("num_hidden_layers", 1, 1 << 12)),
        )


class _Fields:
    """One JSON object of a model's config, read field by field; ``where`` names it in errors (``decoder.``)."""

    def __init__(self, path: Path, data: object, where: str = "") -> None:
        self.path, self.where = path, where
        if not isinstance(data, dict):
            what = f"its {where.rstrip('.')} entry" if where else "it"
            raise LofiError(MODEL_LOAD_FAILED, f"{path} is not a MusicGen config: {what} must be a JSON object, not {_shown(data)}", path=path)
        self.data = data

    def fail(self, key: str, problem: str, value: object) -> None:
        raise LofiError(MODEL_LOAD_FAILED, f"{self.path}: {self.where}{key} {problem}, not {_shown(value)}", path=self.path)

    def value(self, key: str) -> object:
        if key not in self.data:
            raise LofiError(MODEL_LOAD_FAILED, f"{self.path}: {self.where}{key} is missing; it is not a MusicGen config", path=self.path)
        return self.data[key]

    def section(self, key: str) -> "_Fields":
        return _Fields(self.path, self.value(key), f"{self.where}{key}.")

    def integer(self, key: str, lo: int, hi: int, default: int | None = None) -> int:
        value = default if default is not None and self.data.get(key) is None else self.value(key)
        if not _is_int(value) or not lo <= value <= hi:
            self.fail(key, f"must be an integer from {lo} to {hi}", value)
        return int(value)

    def number(self, key: str, default: float, above: float | None = None, at_least: float | None = None) -> float:
        value = default if self.data.get(key) is None else self.data[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (above is not None and value <= above) or (at_least is not None and value < at_least):
            bound = f"above {above:g}" if above is not None else f"of at least {at_least:g}"
            self.fail(key, f"must be a finite number {bound}", value)
        return float(value)


def _is_int(value: object) -> bool:
    """A JSON integer (also written as 32000.0), not true/false."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _shown(value: object) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list, str, int, float, bool, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
            decoder_file = model_dir / files.DECODER_FILES[form][0]
            precision = "fp16" if cached.dtype == np.float16 else "int8" if is_int8(decoder_file) else "fp32"
            model_version = f"musicgen-{settings.size}-{precision}-v1"
        return cls(tokenizer, sessions[files.TEXT_ENCODER], cached, sessions[files.AUDIO_DECODER], settings, model_version)

    @property
    def sample_rate(self) -> int:
        return self.settings.sample_rate

    def progress_model(self, request: GenerateRequest) -> EtaEstimator:
        """One unit of work per decoder step, its cost growing with the cache position it reads."""
        return EtaEstimator([p for w in self.plan(request.duration_sec) for p in w.cache_positions])

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
        duration_sec: float = DEFAULT_DURATION_SEC,
        seed: int | None = None,
        top_k: int | None = None,
        temperature: float | None = None,
        guidance_scale: float | None = None,
        on_step: StepCallback | None = None,
        on_chunk: ChunkCallback | None = None,
    ) -> Generation:
        """Compose ``duration_sec`` of music; the same arguments and seed give bit-identical audio (a library call:
        the parameters go through the one request parser, like every other way in)."""
        params = {"prompt": prompt, "duration_sec": duration_sec, "seed": seed, "top_k": top_k, "temperature": temperature, "guidance_scale": guidance_scale}
        return self.run(GenerateRequest.parse(params, "musicgen"), on_step=on_step, on_chunk=on_chunk)

    def run(self, request: GenerateRequest, on_step: StepCallback | None = None, on_chunk: ChunkCallback | None = None) -> Generation:
        """Compose a parsed request.

        ``on_step(done, total)`` follows every decoder step; ``on_chunk(samples, first_sample)`` receives playable
        audio every 2 s of finished frames, long before the track is done (the last chunk comes from the final decode).
        """
        started = time.perf_counter()
        options = request.options
        prompt, duration_sec, seed = request.prompt, request.duration_sec, request.seed
        sampler = TokenSampler(
            np.random.default_rng(seed),
            self.settings.top_k if options.top_k is None else options.top_k,
            self.settings.temperature if options.temperature is None else options.temperature,
            self.settings.guidance_scale if options.guidance_scale is None else options.guidance_scale,
        )

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


def _read_json(path: Path) -> object:
    """The parsed file; MODEL_LOAD_FAILED naming it (``LofiError.path``) when it cannot be read or is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise LofiError(MODEL_LOAD_FAILED, f"cannot read {path}: {exc}", path=path) from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _size_name(hidden: int, layers: int) -> str:
    return {(1024, 24): "small", (1536, 48): "medium", (2048, 48): "large"}.get((hidden, layers), f"custom{hidden}x{layers}")
