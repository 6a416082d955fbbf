"""MusicGen on ONNX Runtime: text prompt in, mono 32 kHz audio out, token for token as transformers generates."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from lofi_engine.inference.optimized_graphs import open_optimized
from lofi_engine.inference.providers import CPU, CUDA, providers_for
from lofi_engine.inference.session import is_int8, run
from lofi_engine.musicgen.audio_prompt import DEFAULT_CONTEXT_SEC, JOIN_FRAMES, AudioPrompt, join, read_audio_prompt
from lofi_engine.musicgen.costs import CostStore, DecoderEta, StepCosts
from lofi_engine.musicgen.decoder import (
    DECODER_INPUTS,
    WITH_PAST_INPUTS,
    CachedDecoder,
    InPlaceDecoder,
)
from lofi_engine.musicgen.delay_pattern import (
    PREDICTED,
    build_pattern,
    frames_complete,
    undelay,
    window_length,
)
from lofi_engine.musicgen.encodec_encoder import EncodecEncoder
from lofi_engine.musicgen.sampling import TokenSampler
from lofi_engine.musicgen.settings import ModelSettings
from lofi_engine.musicgen.streaming import DECODE_CONTEXT, LOOKAHEAD, AudioStreamer, ChunkCallback, chunk_schedule, tail_frames
from lofi_engine.musicgen.text import described, encode_prompt
from lofi_engine.musicgen.windows import Window, finished_frames, plan_windows
from lofi_engine.shared.errors import (
    CANCELLED,
    MODEL_INFERENCE_FAILED,
    MODEL_LOAD_FAILED,
    LofiError,
)
from lofi_engine.shared.request import GenerateRequest
from lofi_engine.shared.settings import DEFAULT_DURATION_SEC
from lofi_engine.store import musicgen_files as files

StepCallback = Callable[[int, int], None]
LoadCallback = Callable[[str, int, int], None]
COSTS_FILE = "musicgen-step-costs.json"
"""Kept in the optimized-model cache: what jobs cost on this machine (the ETA's prices)."""
QUANTIZATIONS = ("int4",)
"""Decoders derived locally from the fp32 files (``small-int4``)."""
log = logging.getLogger("lofi.engine")


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


@dataclass(frozen=True)
class Step:
    """A decoder step is done: ``done`` of ``total``."""

    done: int
    total: int


@dataclass(frozen=True)
class Chunk:
    """Playable audio before the track is done: ``audio`` from ``first_sample`` of the track on."""

    audio: np.ndarray
    first_sample: int


@dataclass(frozen=True)
class ComposedStep:
    done: int
    total: int
    codes_so_far: Callable[[], np.ndarray]
    """All the finished codes of the job so far ``[codebooks, frames]`` (built only when called)."""


@dataclass
class MusicGen:
    """The three ONNX sessions of MusicGen and the tokenizer; build with :meth:`load`."""

    tokenizer: Tokenizer
    text_encoder: ort.InferenceSession
    decoder: CachedDecoder | InPlaceDecoder
    audio_decoder: ort.InferenceSession
    settings: ModelSettings
    model_version: str
    costs: StepCosts
    """What a job's parts cost here: learned from every finished job, priced into the ETA."""
    cost_store: CostStore | None = None
    cost_key: str = ""
    audio_encoder: EncodecEncoder | None = None
    """EnCodec's encoder (``load(encodec_dir=…)``): what continuing the user's audio needs."""

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
        in_place: bool = True,
        quantize: str | None = None,
        encodec_dir: str | Path | None = None,
    ) -> "MusicGen":
        """Open a model directory laid out like the Hub's (fp32, fp16 or int8 files; merged or split decoder).

        ``on_progress(file_name, bytes_loaded, bytes_total)`` is called as each ONNX file is opened.
        ``optimized_cache``: a directory where ONNX Runtime's optimized graphs (and the derived in-place decoder)
        are kept so later loads are faster.
        ``in_place``: on the CPU, run the decoder derived with an in-place key/value cache
        (:mod:`lofi_engine.musicgen.inplace_graph`); when the published graph's structure is not the expected one,
        the published graph is used as it is and the reason is logged. ``quantize="int4"``: derive a weight-only
        4-bit decoder from the fp32 files (the ``small-int4`` variant). ``encodec_dir``: EnCodec's weights
        (``config.json`` + ``model.safetensors``), from which the encoder that continuing audio needs is derived.
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

        if quantize is not None and quantize not in QUANTIZATIONS:
            raise LofiError(MODEL_LOAD_FAILED, f"unknown quantization {quantize!r}: expected one of {', '.join(QUANTIZATIONS)}")
        decoder_file = model_dir / files.DECODER_FILES[form][0]
        source_int8 = is_int8(decoder_file)
        graphs = {files.TEXT_ENCODER: ("input_ids", "attention_mask"), files.AUDIO_DECODER: ("audio_codes",)}
        decoder_graphs = {files.DECODER_MERGED: (*DECODER_INPUTS, "use_cache_branch")} if form == "merged" else {
            files.DECODER: DECODER_INPUTS, files.DECODER_WITH_PAST: WITH_PAST_INPUTS}
        sizes = {name: (model_dir / name).stat().st_size for name in (*graphs, *decoder_graphs)}
        total = sum(sizes.values())
        sessions: dict[str, ort.InferenceSession] = {}
        for name, inputs in graphs.items():  # EnCodec's activations are large and needed once a job: no arena
            sessions[name] = open_optimized(model_dir / name, threads, providers, inputs, cache, arena=name != files.AUDIO_DECODER)
            if on_progress is not None:
                on_progress(name, sum(sizes[n] for n in sessions), total)

        decoder: CachedDecoder | InPlaceDecoder | None = None
        fp16 = sessions[files.TEXT_ENCODER].get_outputs()[0].type == "tensor(float16)"
        if quantize is not None and (source_int8 or fp16):
            raise LofiError(MODEL_LOAD_FAILED, f"the {quantize} decoder is made from the fp32 files; {decoder_file} is not fp32")
        if (in_place or quantize is not None) and providers == [CPU]:
            decoder = _open_in_place(model_dir, form, threads, providers, cache, quantize)
        elif quantize is not None:
            raise LofiError(MODEL_LOAD_FAILED, f"the {quantize} decoder runs on the CPU only (device {device!r})")
        elif in_place and providers[0] == CUDA:
            if fp16:  # CUDA's GroupQueryAttention kernel is fp16 (and bf16) only
                decoder = _open_in_place(model_dir, form, threads, providers, cache, None)
            else:
                log.info("in-place decoder not used on the GPU for %s: CUDA's GroupQueryAttention runs fp16 only (small-fp16)", model_dir)
        if decoder is None and quantize is not None:
            raise LofiError(MODEL_LOAD_FAILED, f"cannot derive the {quantize} decoder from {decoder_file} (see the log); use the fp32 variant")
        if decoder is None:
            for name, inputs in decoder_graphs.items():
                sessions[name] = open_optimized(model_dir / name, threads, providers, inputs, cache)
            if form == "merged":
                decoder = CachedDecoder(sessions[files.DECODER_MERGED], sessions[files.DECODER_MERGED])
            else:
                decoder = CachedDecoder(sessions[files.DECODER], sessions[files.DECODER_WITH_PAST])
        if on_progress is not None:
            on_progress(files.DECODER_FILES[form][-1], total, total)
        if model_version is None:
            precision = quantize or ("fp16" if decoder.dtype == np.float16 else "int8" if source_int8 else "fp32")
            model_version = f"musicgen-{settings.size}-{precision}-v1"
        graph = f"{'inplace' if decoder.in_place else 'published'}-{form}{'-' + quantize if quantize else ''}"
        cost_key = f"{model_version}|{graph}|{providers[0]}|threads={threads or os.cpu_count()}|ort={ort.__version__}"
        cost_store = CostStore(cache / COSTS_FILE) if cache is not None else None
        costs = (cost_store.load(cost_key) if cost_store is not None else None) or StepCosts.prior(
            decoder.cache_bytes_per_position(rows=2), (model_dir / files.DECODER_FILES[form][-1]).stat().st_size
        )
        audio_encoder = EncodecEncoder.load(Path(encodec_dir).expanduser(), cache, threads) if encodec_dir is not None else None
        return cls(tokenizer, sessions[files.TEXT_ENCODER], decoder, sessions[files.AUDIO_DECODER], settings, model_version,
                   costs, cost_store, cost_key, audio_encoder)

    @property
    def sample_rate(self) -> int:
        return self.settings.sample_rate

    def progress_model(self, request: GenerateRequest, continue_from: AudioPrompt | None = None) -> DecoderEta:
        """One unit of work per decoder step, priced from what this machine measured (:mod:`.costs`), with the
        chunks the engine streams while it composes (after the frames of the audio it continues, if any)."""
        given = len(continue_from.context) // self.settings.hop_length if continue_from is not None else 0
        windows = self.windows(request.duration_sec, given)
        chunks = chunk_schedule(finished_frames(windows, self.settings.num_codebooks))  # decoded as it composes
        return DecoderEta(windows, tail_frames(given + sum(w.new_frames for w in windows), given), self.costs, chunks)

    def windows(self, duration_sec: float, prompt_frames: int = 0) -> list[Window]:
        """The decoder windows that make ``duration_sec`` of audio (after ``prompt_frames`` of audio to continue);
        their steps sum to the job's total work."""
        return plan_windows(duration_sec, self.settings.frame_rate, self.settings.num_codebooks, prompt_frames, self.settings.max_positions)

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
        bpm: float | None = None,
        key: str | None = None,
        time_signature: int | None = None,
        continue_from: str | Path | np.ndarray | None = None,
        continue_rate: int | None = None,
        context_sec: float = DEFAULT_CONTEXT_SEC,
    ) -> Generation:
        """Compose ``duration_sec`` of music; the same arguments and seed give bit-identical audio (a library call:
        the parameters go through the one request parser, like every other way in). ``bpm`` (30–300), ``key``
        ("C minor") and ``time_signature`` (2, 3, 4, 6) are read as words after the prompt.

        ``continue_from``: audio to continue (a file soundfile reads, or float samples at ``continue_rate``), as
        transformers' ``generate(input_values=…)`` does: its last ``context_sec`` are encoded (``load(encodec_dir=…)``)
        and continued, the prompt's codes in both guidance branches; the codes returned start with the prompt's,
        and the audio is the whole input followed by ``duration_sec`` of new music."""
        params = {"prompt": prompt, "duration_sec": duration_sec, "seed": seed, "top_k": top_k, "temperature": temperature, "guidance_scale": guidance_scale,
                  "bpm": bpm, "key": key, "time_signature": time_signature}
        request = GenerateRequest.parse(params, "musicgen")
        audio = None if continue_from is None else read_audio_prompt(continue_from, self.sample_rate, continue_rate, context_sec)
        return self.run(request, on_step=on_step, on_chunk=on_chunk, continue_from=audio)

    def run(
        self,
        request: GenerateRequest,
        on_step: StepCallback | None = None,
        on_chunk: ChunkCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
        continue_from: AudioPrompt | None = None,
    ) -> Generation:
        """Compose a parsed request (:meth:`stream` with callbacks).

        ``on_step(done, total)`` follows every decoder step; ``on_chunk(samples, first_sample)`` receives playable
        audio every 2 s of finished frames, long before the track is done (the chunks joined are the track).
        ``should_stop()`` is asked after every decoder step: True ends the job with CANCELLED.
        """
        for item in self.stream(request, should_stop, chunks=on_chunk is not None, continue_from=continue_from):
            if isinstance(item, Step) and on_step is not None:
                on_step(item.done, item.total)
            elif isinstance(item, Chunk) and on_chunk is not None:
                on_chunk(item.audio, item.first_sample)
            elif isinstance(item, Generation):
                return item
        raise AssertionError("a stream ends with its Generation")

    def stream(
        self, request: GenerateRequest, should_stop: Callable[[], bool] | None = None, chunks: bool = True, continue_from: AudioPrompt | None = None
    ) -> Iterator[Step | Chunk | Generation]:
        """One generation as it happens: a :class:`Step` after every decoder step, a :class:`Chunk` of playable audio
        whenever 2 s more are final (``chunks``), and the :class:`Generation` last, whose audio is those chunks
        joined (every sample decoded once: see :mod:`.streaming`). ``should_stop()`` is asked after every step:
        True ends it with CANCELLED. Its time (not the consumer's) teaches the ETA's prices.

        ``continue_from``: the piece continues that audio (its codes start the codes; its audio starts the track,
        joined by :func:`.audio_prompt.join`). Its first chunk is that audio with the seam (as soon as the seam's
        frames are composed: a player can play it while the rest is composed), then the new music's chunks."""
        started = time.perf_counter()
        sampler = TokenSampler.for_request(request, self.settings)
        hidden, mask = encode_prompt(self.tokenizer, self.text_encoder, described(request.prompt, request.music), sampler.uses_guidance)
        context = self.prompt_codes(continue_from) if continue_from is not None else None
        given = context.shape[1] if context is not None else 0
        hop = self.settings.hop_length
        offset = len(continue_from.audio) - given * hop if continue_from is not None else 0  # track sample of codes frame 0
        windows = self.windows(request.duration_sec, given)
        finished = [given + f for f in finished_frames(windows, self.settings.num_codebooks)]
        decoded: list[tuple[np.ndarray, float]] = []  # each stretch's audio and its decode's seconds

        def timed_decode(codes: np.ndarray) -> np.ndarray:
            started_decode = time.perf_counter()
            audio = self.decode_audio(codes)
            decoded.append((audio, time.perf_counter() - started_decode))
            return audio

        parts: list[np.ndarray] = []
        fresh: list[Chunk] = []

        def kept(audio: np.ndarray, first: int) -> None:
            parts.append(audio)
            fresh.append(Chunk(audio, first + offset))

        streamer = AudioStreamer(timed_decode, hop, kept, emitted_frames=given)
        composition = self.compose(windows, hidden, mask, sampler, should_stop, context=context, clock_from=started)
        head: np.ndarray | None = None  # the audio continued, its end faded into EnCodec's rendering of it
        for step in composition:
            yield Step(step.done, step.total)
            if continue_from is not None and head is None and chunks and finished[step.done - 1] >= given + LOOKAHEAD:
                head = join(continue_from.audio, self._rendered_end(step.codes_so_far(), given), np.zeros(0, np.float32))
                yield Chunk(head, 0)
            streamer.feed(finished[step.done - 1], step.codes_so_far)
            if chunks:
                yield from fresh
            fresh.clear()
        if should_stop is not None and should_stop():  # asked while the last step was handled: no decode, no track
            raise LofiError(CANCELLED, f"cancelled after decoder step {composition.total} of {composition.total}")
        codes, unit_sec = composition.codes, composition.unit_sec
        self.decoder.release()  # the cache is not needed for the last decode: the job's peak memory is one or the other
        streamer_chunks = len(decoded)
        streamer.finish(codes)
        tail_sec = sum(sec for _, sec in decoded[streamer_chunks:])
        chunk_sec = [sec for _, sec in decoded[:streamer_chunks]]
        self.learn_costs(windows, unit_sec, tail_frames(codes.shape[1], given), tail_sec, sum(chunk_sec) / len(chunk_sec) if chunk_sec else None)
        if chunks:
            yield from fresh
        audio = np.concatenate(parts)
        if continue_from is not None:
            if head is None:
                head = join(continue_from.audio, self._rendered_end(codes, given), np.zeros(0, np.float32))
                if chunks:  # a piece too short to have given it while composed
                    yield Chunk(head, 0)
            audio = np.concatenate([head, audio])
        yield Generation(
            audio=audio,
            sample_rate=self.settings.sample_rate,
            codes=codes,
            seed=request.seed,
            duration_sec=request.duration_sec,
            generation_time_sec=time.perf_counter() - started,
            prompt=request.prompt,
            model_version=self.model_version,
        )

    def compose(
        self,
        windows: list[Window],
        hidden: np.ndarray,
        mask: np.ndarray,
        sampler: TokenSampler,
        should_stop: Callable[[], bool] | None = None,
        context: np.ndarray | None = None,
        clock_from: float | None = None,
    ) -> "Composition":
        """The decoder steps of ``windows`` (continuing ``context`` codes, when given): the one step loop of a
        generation and of the radio's windows. See :class:`Composition`."""
        return Composition(self, windows, hidden, mask, sampler, should_stop, context, clock_from)

    def learn_costs(self, windows: list[Window], unit_sec: list[float], frames: int, decode_sec: float, chunk_sec: float | None = None) -> None:
        """Refine and keep this machine's prices from a finished job (see :meth:`StepCosts.learn`)."""
        self.costs = self.costs.learn(windows, unit_sec, frames, decode_sec, chunk_sec)
        if self.cost_store is not None and self.costs.jobs:
            self.cost_store.save(self.cost_key, self.costs)

    def continue_codes(
        self, prompt: np.ndarray, new_frames: int, hidden: np.ndarray, mask: np.ndarray, sampler: TokenSampler
    ) -> Iterator[tuple[int, Callable[[], np.ndarray]]]:
        """Continue undelayed ``prompt`` codes ``[codebooks, F]`` by ``new_frames``, one decoder step per item; the
        generator returns all F + new frames.

        The prompt is prefilled in one decoder call from an empty cache, then one token is fed a step. Each item is
        ``(complete, finished)``: ``complete`` frames of the window are finished and ``finished()`` returns them.
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
            complete = frames_complete(position, prompt_frames, new_frames, codebooks)
            yield complete, lambda complete=complete: undelay(grid, complete)
        return undelay(grid, prompt_frames + new_frames)

    def prompt_codes(self, prompt: AudioPrompt) -> np.ndarray:
        """The codes ``[codebooks, frames]`` of the audio to continue (its last seconds), by EnCodec's encoder."""
        if self.audio_encoder is None:
            raise LofiError(MODEL_LOAD_FAILED, "continuing audio needs EnCodec's encoder: load the model with encodec_dir (EnCodec's config.json and model.safetensors)")
        return self.audio_encoder.encode(prompt.context)

    def _rendered_end(self, codes: np.ndarray, given: int) -> np.ndarray:
        """EnCodec's rendering of the last :data:`JOIN_FRAMES` frames of the audio continued, decoded like a stream's
        stretch (context before, lookahead after), so the new music continues it exactly."""
        start = given - JOIN_FRAMES
        lo, hi = max(0, start - DECODE_CONTEXT), min(codes.shape[1], given + LOOKAHEAD)
        hop = self.settings.hop_length
        return self.decode_audio(codes[:, lo:hi])[(start - lo) * hop : (given - lo) * hop]

    def decode_audio(self, codes: np.ndarray) -> np.ndarray:
        """EnCodec: codes ``[codebooks, frames]`` to float32 samples (``frames × hop``)."""
        audio = run(self.audio_decoder, {"audio_codes": codes[None, None].astype(np.int64)}, "audio decoder")[0]
        audio = audio.reshape(-1).astype(np.float32)
        if not np.isfinite(audio).all():
            raise LofiError(MODEL_INFERENCE_FAILED, "the audio decoder produced NaN or infinite samples")
        return audio


class Composition:
    """The decoder steps of one or more windows, iterated: a :class:`ComposedStep` after each. Its own time (not the
    time its consumer holds a step) is measured a unit at a step; once iterated, :attr:`codes` holds the codes
    (context included) and :attr:`unit_sec` each unit's seconds, the first from ``clock_from`` (the job's start)."""

    def __init__(
        self, model: MusicGen, windows: list[Window], hidden: np.ndarray, mask: np.ndarray, sampler: TokenSampler,
        should_stop: Callable[[], bool] | None, context: np.ndarray | None, clock_from: float | None,
    ) -> None:
        self.model, self.windows, self.condition, self.sampler, self.should_stop = model, windows, (hidden, mask), sampler, should_stop
        self.codes = context if context is not None else np.zeros((model.settings.num_codebooks, 0), dtype=np.int64)
        self.unit_sec: list[float] = []
        self.total = sum(w.steps for w in windows)
        self._clock_from = clock_from

    def __iter__(self) -> Iterator[ComposedStep]:
        done = 0
        clock = self._clock_from if self._clock_from is not None else time.perf_counter()
        for window in self.windows:
            before = self.codes
            prompt = before[:, before.shape[1] - window.prompt_frames :]
            steps = self.model.continue_codes(prompt, window.new_frames, *self.condition, self.sampler)
            while True:
                try:
                    _, finished = next(steps)
                except StopIteration as end:
                    produced = end.value
                    break
                self.unit_sec.append(time.perf_counter() - clock)
                done += 1
                if self.should_stop is not None and self.should_stop():
                    raise LofiError(CANCELLED, f"cancelled at decoder step {done} of {self.total}")
                yield ComposedStep(done, self.total, lambda b=before, f=finished, w=window: np.concatenate([b, f()[:, w.prompt_frames :]], axis=1))
                clock = time.perf_counter()
            self.codes = np.concatenate([before, produced[:, window.prompt_frames :]], axis=1)


def _open_in_place(
    model_dir: Path, form: str, threads: int | None, providers: list[str], cache: Path | None, quantize: str | None
) -> InPlaceDecoder | None:
    """The in-place decoder, or None (with the reason logged) when the published graph does not fit the rewrite
    or ONNX Runtime cannot run the result; a file that does not load is still MODEL_LOAD_FAILED."""
    from lofi_engine.musicgen import inplace_graph

    try:
        sessions = inplace_graph.open_in_place(model_dir, form, threads, providers, cache, quantize)
        return InPlaceDecoder(sessions["step"], sessions["cross"], merged=form == "merged", device="cpu" if providers == [CPU] else "cuda")
    except inplace_graph.Unsupported as exc:
        log.warning("in-place decoder not used for %s (%s decoder): %s; running the published graph", model_dir, form, exc)
    except ImportError as exc:
        log.warning("in-place decoder not used: %s; running the published graph", exc)
    except LofiError as exc:
        if exc.path is not None and Path(exc.path).parent == model_dir:
            raise
        log.warning("in-place decoder not used for %s: %s; running the published graph", model_dir, exc.message)
    except Exception as exc:  # a published file onnx cannot parse: the published path reports it, naming the file
        log.warning("in-place decoder not used for %s: %s: %s; running the published graph", model_dir, type(exc).__name__, exc)
    return None
