"""The MusicGen decoder with its key/value cache, over the merged file or the split pair."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from .errors import MODEL_INFERENCE_FAILED, LofiError
from .onnx_session import float_type, run

DECODER_INPUTS = ("input_ids", "encoder_attention_mask", "encoder_hidden_states")
WITH_PAST_INPUTS = ("input_ids", "encoder_attention_mask", "past_key_values.0.decoder.key")
USE_CACHE = "use_cache_branch"


@dataclass
class CachedDecoder:
    """Runs ``first`` on an empty cache (one call for any number of positions), then ``with_past`` a token a step.

    For the merged file both are the same session, switched by ``use_cache_branch``.
    """

    first: ort.InferenceSession
    with_past: ort.InferenceSession
    dtype: type[np.floating] = field(init=False)
    _past_names: list[str] = field(init=False)
    _output_names: list[str] = field(init=False)
    _cache: dict[str, np.ndarray] = field(init=False, default_factory=dict)
    _encoder: dict[str, np.ndarray] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.dtype = float_type(self.first, "encoder_hidden_states")
        self._past_names = [i.name for i in self.with_past.get_inputs() if i.name.startswith("past_key_values.")]
        self._past_shapes = {i.name: i.shape for i in self.with_past.get_inputs() if i.name in self._past_names}
        self._output_names = [o.name for o in self.first.get_outputs()]
        self._with_past_outputs = [o.name for o in self.with_past.get_outputs()]
        self._with_past_inputs = {i.name for i in self.with_past.get_inputs()}

    @property
    def merged(self) -> bool:
        return self.first is self.with_past

    def start(self, input_ids: np.ndarray, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Prefill ``input_ids`` ``[rows, n]`` from an empty cache; returns the last position's logits."""
        self._encoder = {"encoder_hidden_states": hidden.astype(self.dtype, copy=False), "encoder_attention_mask": mask}
        feeds = {"input_ids": input_ids, **self._encoder}
        if self.merged:
            batch = hidden.shape[0]
            for name in self._past_names:
                _, heads, _, head_dim = self._past_shapes[name]
                feeds[name] = np.zeros((batch, heads, 0, head_dim), dtype=self.dtype)
            feeds[USE_CACHE] = np.array([False])
        outputs = run(self.first, feeds, "decoder")
        self._cache = self._presents(self._output_names, outputs, encoder=True)
        return self._last_logits(outputs[0])

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        """Feed one new token per row (``[rows, 1]``); returns its logits."""
        feeds = {"input_ids": input_ids, **self._cache}
        feeds.update((k, v) for k, v in self._encoder.items() if k in self._with_past_inputs)
        if self.merged:
            feeds[USE_CACHE] = np.array([True])
        outputs = run(self.with_past, feeds, "decoder")
        self._cache.update(self._presents(self._with_past_outputs, outputs, encoder=False))
        return self._last_logits(outputs[0])

    @staticmethod
    def _presents(names: list[str], outputs: list[np.ndarray], encoder: bool) -> dict[str, np.ndarray]:
        """Outputs ``present.*`` renamed as the next step's ``past_key_values.*``.

        The cross-attention (encoder) cache is computed once, by the first call; the merged file's cache branch
        returns empty placeholders for it, which must not replace it.
        """
        return {
            "past_key_values." + name[len("present.") :]: value
            for name, value in zip(names, outputs)
            if name.startswith("present.") and (encoder or ".decoder." in name)
        }

    @staticmethod
    def _last_logits(logits: np.ndarray) -> np.ndarray:
        last = logits[:, -1, :].astype(np.float32)
        if not np.isfinite(last).all():
            raise LofiError(MODEL_INFERENCE_FAILED, "the decoder produced NaN or infinite logits (numerical instability)")
        return last
