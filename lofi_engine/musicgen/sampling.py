"""Turning decoder logits into the next token of each codebook: guidance, temperature, seeded top-k."""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lofi_engine.musicgen.settings import ModelSettings
    from lofi_engine.shared.request import GenerateRequest


@dataclass
class TokenSampler:
    """Classifier-free guidance, then temperature, then top-k, drawn from a seeded numpy Generator.

    ``guidance_scale <= 1`` means the decoder runs without the unconditional half. ``top_k == 1`` is greedy.
    """

    rng: np.random.Generator
    top_k: int
    temperature: float
    guidance_scale: float

    @classmethod
    def for_request(cls, request: GenerateRequest, settings: ModelSettings) -> "TokenSampler":
        """Seeded by the request; its sampling options where given, else the model's generation config."""
        options = request.options
        return cls(
            np.random.default_rng(request.seed),
            settings.top_k if options.top_k is None else options.top_k,
            settings.temperature if options.temperature is None else options.temperature,
            settings.guidance_scale if options.guidance_scale is None else options.guidance_scale,
        )

    @property
    def uses_guidance(self) -> bool:
        return self.guidance_scale > 1.0

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """``logits`` ``[rows, vocab]`` for the last position (rows = codebooks, doubled with guidance)."""
        scores = logits.astype(np.float32, copy=False)
        if self.uses_guidance:
            cond, uncond = np.split(scores, 2)
            scores = uncond + (cond - uncond) * np.float32(self.guidance_scale)
        if self.top_k == 1:
            return scores.argmax(axis=-1)
        scores = scores / np.float32(self.temperature)
        k = min(self.top_k, scores.shape[-1])
        candidates = np.argpartition(-scores, k - 1, axis=-1)[:, :k]
        top = np.take_along_axis(scores, candidates, axis=-1).astype(np.float64)
        probs = np.exp(top - top.max(axis=-1, keepdims=True))
        cdf = np.cumsum(probs, axis=-1)
        draws = self.rng.random(len(cdf)) * cdf[:, -1]
        picks = np.minimum((cdf < draws[:, None]).sum(axis=-1), k - 1)
        return candidates[np.arange(len(candidates)), picks]
