"""ACE-Step 1.5 turbo on ONNX Runtime: prompt in, 48 kHz stereo out, as diffusers' `AceStepPipeline` computes it.

numpy + onnxruntime only. One `session.run` per DiT evaluation (8 for turbo, no guidance), the flow-matching Euler
loop and its shifted sigmas on the host, the VAE decode in overlapping chunks; every step and chunk is a progress
point and a cancellation point, and :meth:`AceStep.cancel` also stops the run in flight.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from lofi_engine.inference.providers import providers_for, session_options
from lofi_engine.inference.session import open_session, run
from lofi_engine.shared.errors import (
    CANCELLED,
    MODEL_INFERENCE_FAILED,
    MODEL_LOAD_FAILED,
    LofiError,
)
from lofi_engine.shared.eta import StageEta
from lofi_engine.shared.music import MusicalControls
from lofi_engine.shared.request import GenerateRequest
from lofi_engine.shared.settings import DEFAULT_DURATION_SEC
from lofi_engine.store.ace_step_manifest import GRAPHS, HashCallback, Manifest

DECODE_FRAMES = 250
"""Latent frames (10 s) decoded per VAE chunk: a progress and cancellation point every 10 s of audio."""
DECODE_OVERLAP = 16
"""Latent frames of context each side of a chunk, cut away after decoding. The Oobleck decoder sees ±10 frames
(measured: with 10 frames of context a chunk equals the whole decode exactly), so the joined chunks are exact."""
PEAK = 10 ** (-1.0 / 20.0)
"""Tracks are normalised to a −1 dBFS peak, as ACE-Step's own pipeline does."""

StepCallback = Callable[[int, int], None]
"""``on_step(done, total)`` after each unit of work: the DiT steps, then the decode chunks (``Plan.units`` names them)."""
DIT_SEC_PER_TOKEN = 0.016
VAE_SEC_PER_FRAME = 0.043
"""The cost model that prices a stage before it is measured (`make bench-ace-step`, 2 cores, full-size random parts):
a DiT step per token of the piece, a decode chunk per latent frame it decodes. Only the ratio matters."""
LoadCallback = Callable[[str, int, int], None]


def sigmas(steps: int, shift: float) -> np.ndarray:
    """``steps + 1`` noise levels from 1 to 0: a linear ramp bent by ``shift·t / (1 + (shift − 1)·t)``."""
    t = np.linspace(1.0, 0.0, steps + 1, dtype=np.float32)
    if shift != 1.0:
        t = shift * t / (1 + (shift - 1) * t)
    return t.astype(np.float32)


@dataclass(frozen=True)
class DecodeChunk:
    start: int
    """First latent frame fed to the decoder (with context)."""
    end: int
    keep_start: int
    """The frames this chunk contributes to the track: ``keep_start`` to ``keep_end``."""
    keep_end: int


@dataclass(frozen=True)
class Plan:
    """The shapes a duration maps to, and the job's units of work."""

    duration_sec: float
    latent_frames: int
    """T = ceil(duration × 25)."""
    dit_frames: int
    """T rounded up to the DiT's patch size (the host pads, as diffusers pads inside)."""
    dit_tokens: int
    samples: int
    """Audio samples per channel: T × hop (1920)."""
    steps: int
    chunks: list[DecodeChunk]

    @property
    def units(self) -> list[str]:
        return ["diffusion"] * self.steps + ["decode"] * len(self.chunks)

    @property
    def costs(self) -> list[float]:
        """Each unit's expected seconds by the cost model, for the ETA before a stage is measured."""
        step = DIT_SEC_PER_TOKEN * self.dit_tokens
        return [step] * self.steps + [VAE_SEC_PER_FRAME * (c.end - c.start) for c in self.chunks]


@dataclass
class AceGeneration:
    audio: np.ndarray
    """float32 ``[samples, 2]``."""
    sample_rate: int
    latents: np.ndarray
    """``[T, 64]``."""
    seed: int
    duration_sec: float
    generation_time_sec: float
    prompt: str
    model_version: str
    backend: str = "ace-step"


class Cancelled(LofiError):
    def __init__(self, where: str) -> None:
        super().__init__(CANCELLED, f"cancelled {where}")


@dataclass
class AceStep:
    """The four ONNX sessions of an ACE-Step export, its tokenizer and silence latent; build with :meth:`load`."""

    manifest: Manifest
    tokenizer: Tokenizer
    sessions: dict[str, ort.InferenceSession]
    silence: np.ndarray
    """``[frames, 64]``: the model's encoded silence (timbre input and the context of text-to-music)."""
    model_version: str
    run_options: ort.RunOptions
    _cancelled: threading.Event
    _should_stop: Callable[[], bool]

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        variant: str = "fp32",
        device: str = "auto",
        threads: int | None = None,
        model_version: str | None = None,
        on_progress: LoadCallback | None = None,
        on_verify: HashCallback | None = None,
    ) -> "AceStep":
        """Open the export at ``model_dir``: only the files its manifest names, each checked against its sha256.

        ``on_verify(file, bytes_hashed, bytes_total)`` follows the check (the first load of an export hashes it all);
        ``on_progress(file, bytes_loaded, bytes_total)`` follows the sessions opening.
        """
        manifest = Manifest.read(model_dir)
        graphs = manifest.variant_files(variant)
        manifest.verify(manifest.files_for(variant), on_verify)
        providers = providers_for(device)
        root = manifest.root
        try:
            tokenizer = Tokenizer.from_file(str(root / manifest["tokenizer"]))
            silence = np.load(root / manifest["silence_latent"]).astype(np.float32)
        except Exception as exc:
            raise LofiError(MODEL_LOAD_FAILED, f"cannot read the tokenizer or silence latent in {root}: {exc}") from None
        if silence.ndim != 2 or silence.shape[1] != manifest["latent_channels"]:
            raise LofiError(MODEL_LOAD_FAILED, f"{root / manifest['silence_latent']} has shape {silence.shape}, not [frames, {manifest['latent_channels']}]")
        sizes = {role: (root / graphs[role]).stat().st_size for role in GRAPHS}
        sessions: dict[str, ort.InferenceSession] = {}
        for role in GRAPHS:
            spec = manifest["graphs"][role]
            session = open_session(root / graphs[role], session_options(threads), providers, tuple(spec["inputs"]))
            outputs = {o.name for o in session.get_outputs()}
            if not set(spec["outputs"]) <= outputs:
                raise LofiError(MODEL_LOAD_FAILED, f"{root / graphs[role]} lacks the outputs {sorted(set(spec['outputs']) - outputs)} its manifest names")
            sessions[role] = session
            if on_progress is not None:
                on_progress(graphs[role], sum(sizes[r] for r in sessions), sum(sizes.values()))
        return cls(manifest, tokenizer, sessions, silence, model_version or manifest.model_version(variant), ort.RunOptions(), threading.Event(), _never)

    @property
    def sample_rate(self) -> int:
        return int(self.manifest["sample_rate"])

    def plan(self, duration_sec: float, steps: int | None = None) -> Plan:
        frames = math.ceil(duration_sec * self.manifest.latent_rate)
        return make_plan(duration_sec, frames, self.manifest["patch_size"], self.manifest["hop_length"], steps or self.manifest["steps"])

    def progress_model(self, request: GenerateRequest) -> StageEta:
        """The job's units of work (DiT steps, then decode chunks) and the ETA over them."""
        plan = self.plan(request.duration_sec, request.options.steps)
        return StageEta(plan.units, plan.costs)

    # ---- cancellation -----------------------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the running generation, inside the ONNX run in flight or at the next step. Safe from any thread."""
        self._cancelled.set()
        self.run_options.terminate = True

    def _check(self, where: str) -> None:
        if self._cancelled.is_set() or self._should_stop():
            raise Cancelled(where)

    def _run(self, role: str, feeds: dict[str, np.ndarray], where: str) -> list[np.ndarray]:
        try:
            return run(self.sessions[role], feeds, role.replace("_", " "), self.run_options)
        except LofiError:
            self._check(where)  # a terminated run surfaces as an ONNX Runtime failure
            raise

    # ---- generation ------------------------------------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        duration_sec: float = DEFAULT_DURATION_SEC,
        seed: int | None = None,
        steps: int | None = None,
        noise: np.ndarray | None = None,
        on_step: StepCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
        bpm: float | None = None,
        key: str | None = None,
        time_signature: int | None = None,
    ) -> AceGeneration:
        """Compose ``duration_sec`` (10–240 s) of stereo music; the same prompt, duration and seed give the same audio
        (a library call: the parameters go through the one request parser, like every other way in). ``bpm``,
        ``key`` and ``time_signature`` condition it through the prompt's metadata lines."""
        params = {"prompt": prompt, "duration_sec": duration_sec, "seed": seed, "steps": steps, "bpm": bpm, "key": key, "time_signature": time_signature}
        request = GenerateRequest.parse(params, "ace-step")
        return self.run(request, on_step=on_step, should_stop=should_stop, noise=noise)

    def run(
        self,
        request: GenerateRequest,
        on_step: StepCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
        noise: np.ndarray | None = None,
    ) -> AceGeneration:
        """Compose a parsed request.

        ``noise`` ``[T, 64]`` replaces the seeded starting noise (to compare with another implementation).
        ``should_stop()`` is asked before every step and chunk (a stop request that may predate this call);
        :meth:`cancel` also ends the ONNX run in flight.
        """
        started = time.perf_counter()
        self._cancelled.clear()
        self.run_options = ort.RunOptions()
        self._should_stop = should_stop or _never
        prompt, duration_sec, seed, steps = request.prompt, request.duration_sec, request.seed, request.options.steps
        plan = self.plan(duration_sec, steps)
        if noise is None:
            noise = np.random.default_rng(seed).standard_normal((plan.latent_frames, self.manifest["latent_channels"]), dtype=np.float32)
        elif noise.shape != (plan.latent_frames, self.manifest["latent_channels"]):
            raise LofiError(MODEL_INFERENCE_FAILED, f"noise of shape {noise.shape} for {plan.latent_frames} latent frames")
        self._check("before it started")
        done, units = 0, len(plan.units)

        def advance() -> None:
            nonlocal done
            done += 1
            if on_step is not None:
                on_step(done, units)

        encoded = self.encode(prompt, duration_sec, request.music)
        latents = self.denoise(noise, encoded, plan, advance)
        audio = self.decode(latents, plan, advance)
        return AceGeneration(
            audio=audio, sample_rate=self.sample_rate, latents=latents, seed=seed, duration_sec=duration_sec,
            generation_time_sec=time.perf_counter() - started, prompt=prompt, model_version=self.model_version,
        )

    def encode(self, prompt: str, duration_sec: float, music: MusicalControls | None = None) -> np.ndarray:
        """Text encoder on the prompt template (it names the duration, and the tempo, time signature and key when
        asked for), then the condition encoder: ``[1, S, H]``."""
        text = self.manifest["text_template"].format(caption=prompt, duration=int(duration_sec))
        for name, value in (music or MusicalControls()).metas().items():  # the template's metadata lines say N/A
            text = text.replace(f"\n- {name}: N/A\n", f"\n- {name}: {value}\n", 1)
        ids = self._ids(text, self.manifest["max_text_tokens"])
        lyric_ids = self._ids(self.manifest["lyric"], self.manifest["max_lyric_tokens"])
        hidden, lyric = self._run("text_encoder", {"input_ids": ids, "attention_mask": np.ones_like(ids), "lyric_ids": lyric_ids}, "while encoding the prompt")
        timbre = self.silence_frames(self.manifest["timbre_frames"])[None]
        return self._run("condition_encoder", {"text_hidden_states": hidden, "lyric_embeds": lyric, "timbre_latents": timbre}, "while encoding the prompt")[0]

    def _ids(self, text: str, limit: int) -> np.ndarray:
        return np.array([self.tokenizer.encode(text).ids[:limit]], dtype=np.int64)

    def silence_frames(self, frames: int) -> np.ndarray:
        """The silence latent repeated or cut to ``frames``."""
        repeats = -(-frames // self.silence.shape[0])
        return np.tile(self.silence, (repeats, 1))[:frames]

    def denoise(self, noise: np.ndarray, encoded: np.ndarray, plan: Plan, after_step: Callable[[], None] | None = None) -> np.ndarray:
        """Euler steps of the flow from noise (σ = 1) to latents (σ = 0); the DiT predicts the velocity."""
        frames, padded = plan.latent_frames, plan.dit_frames
        channels = self.manifest["latent_channels"]
        context = np.zeros((1, padded, 2 * channels), dtype=np.float32)
        context[0, :frames, :channels] = self.silence_frames(frames)
        context[0, :frames, channels:] = 1.0
        x = np.zeros((1, padded, channels), dtype=np.float32)
        x[0, :frames] = noise
        levels = sigmas(plan.steps, float(self.manifest["shift"]))
        for i in range(plan.steps):
            self._check(f"at diffusion step {i + 1} of {plan.steps}")
            sigma = np.array([levels[i]], dtype=np.float32)
            velocity = self._run(
                "dit",
                {"hidden_states": x, "timestep": sigma, "timestep_r": sigma, "encoder_hidden_states": encoded, "context_latents": context},
                f"at diffusion step {i + 1} of {plan.steps}",
            )[0]
            x = x + (levels[i + 1] - levels[i]) * velocity
            x[0, frames:] = 0.0  # the padding frame starts every step as zeros, as diffusers' own padding does
            if after_step is not None:
                after_step()
        latents = x[0, :frames]
        if not np.isfinite(latents).all():
            raise LofiError(MODEL_INFERENCE_FAILED, "the diffusion produced NaN or infinite latents")
        return latents

    def decode(self, latents: np.ndarray, plan: Plan, after_chunk: Callable[[], None] | None = None) -> np.ndarray:
        """VAE decode chunk by chunk (overlaps cut away), then the −1 dBFS peak normalisation: ``[samples, 2]``."""
        hop = self.manifest["hop_length"]
        z = np.ascontiguousarray(latents.T[None])
        audio = np.empty((self.manifest["audio_channels"], plan.samples), dtype=np.float32)
        for n, chunk in enumerate(plan.chunks):
            where = f"while decoding chunk {n + 1} of {len(plan.chunks)}"
            self._check(where)
            out = self._run("vae_decoder", {"latents": z[:, :, chunk.start : chunk.end]}, where)[0][0]
            offset = (chunk.keep_start - chunk.start) * hop
            audio[:, chunk.keep_start * hop : chunk.keep_end * hop] = out[:, offset : offset + (chunk.keep_end - chunk.keep_start) * hop]
            if after_chunk is not None:
                after_chunk()
        if not np.isfinite(audio).all():
            raise LofiError(MODEL_INFERENCE_FAILED, "the audio decoder produced NaN or infinite samples")
        # ACE-Step divides by the peak past full scale, then scales the peak to −1 dBFS: one gain, PEAK / peak.
        audio *= PEAK / max(float(np.abs(audio).max()), 1e-6)
        return np.ascontiguousarray(audio.T)


def _never() -> bool:
    return False


def make_plan(duration_sec: float, frames: int, patch: int, hop: int, steps: int) -> Plan:
    padded = -(-frames // patch) * patch
    chunks = []
    for keep_start in range(0, frames, DECODE_FRAMES):
        keep_end = min(frames, keep_start + DECODE_FRAMES)
        chunks.append(DecodeChunk(max(0, keep_start - DECODE_OVERLAP), min(frames, keep_end + DECODE_OVERLAP), keep_start, keep_end))
    return Plan(duration_sec, frames, padded, padded // patch, frames * hop, steps, chunks)
