"""The MusicGen decoder with its key/value cache: :class:`InPlaceDecoder` over the in-place graphs derived from
the published files (the default on the CPU), or :class:`CachedDecoder` over the published merged file or split
pair as they are (the fallback, and GPUs).

CachedDecoder:
Each step the graph concatenates the past cache with the new position and returns the result. Left to itself
ONNX Runtime allocates a fresh output for that every step (hundreds of MB late in a window) and a plain loop
copies it into numpy and back. Here the self-attention cache lives in two preallocated buffers per tensor,
reused for the whole window: a step reads its past from one and writes its present into the other through
IOBinding, then they swap. The cross-attention cache is computed once per window and bound as is.

Measured with `make bench` against a plain `session.run` loop and against keeping ONNX Runtime's own outputs
as OrtValues: step times are within noise of each other (the graph's own concatenation dominates), and this
one holds the least memory for a 30 s track (5.4 GB peak against 6.8 GB).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from lofi_engine.inference.session import float_type, run_bound
from lofi_engine.shared.errors import MODEL_INFERENCE_FAILED, LofiError

DECODER_INPUTS = ("input_ids", "encoder_attention_mask", "encoder_hidden_states")
WITH_PAST_INPUTS = ("input_ids", "encoder_attention_mask", "past_key_values.0.decoder.key")
USE_CACHE = "use_cache_branch"
PAST, PRESENT = "past_key_values.", "present."


@dataclass
class CachedDecoder:
    """Runs ``first`` on an empty cache (one call for any number of positions), then ``with_past`` a token a step.

    For the merged file both are the same session, switched by ``use_cache_branch``.
    """

    first: ort.InferenceSession
    with_past: ort.InferenceSession
    dtype: type[np.floating] = field(init=False)
    _self_names: list[str] = field(init=False)  # present.{i}.decoder.{key,value}
    _cross_names: list[str] = field(init=False)  # present.{i}.encoder.{key,value}
    _heads: int = field(init=False)
    _head_dim: int = field(init=False)
    _buffers: dict[str, list[np.ndarray]] = field(init=False, default_factory=dict)
    _cross: dict[str, ort.OrtValue] = field(init=False, default_factory=dict)
    _feeds: dict[str, np.ndarray] = field(init=False, default_factory=dict)
    _rows: int = field(init=False, default=0)
    _length: int = field(init=False, default=0)
    _current: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.dtype = float_type(self.first, "encoder_hidden_states")
        self._first_outputs = [o.name for o in self.first.get_outputs()]
        self._self_names = [n for n in self._first_outputs if n.startswith(PRESENT) and ".decoder." in n]
        self._cross_names = [n for n in self._first_outputs if n.startswith(PRESENT) and ".encoder." in n]
        sample = next(i for i in self.with_past.get_inputs() if i.name == PAST + self._self_names[0][len(PRESENT):])
        self._heads, self._head_dim = int(sample.shape[1]), int(sample.shape[3])
        self._with_past_inputs = {i.name for i in self.with_past.get_inputs()}

    @property
    def merged(self) -> bool:
        return self.first is self.with_past

    @property
    def in_place(self) -> bool:
        return False

    def cache_bytes_per_position(self, rows: int) -> int:
        """Cache bytes a step moves per cached position: the graph reads the past, writes it into the present
        with the new position, and attention reads that again."""
        return 3 * len(self._self_names) * rows * self._heads * self._head_dim * np.dtype(self.dtype).itemsize

    def release(self) -> None:
        """Let the cache buffers go between jobs (the next ``start`` reserves them again)."""
        self._buffers.clear()
        self._cross.clear()

    def start(self, input_ids: np.ndarray, hidden: np.ndarray, mask: np.ndarray, capacity: int) -> np.ndarray:
        """Prefill ``input_ids`` ``[rows, n]`` from an empty cache that will grow to ``capacity`` positions;
        returns the last position's logits."""
        batch, n = hidden.shape[0], input_ids.shape[1]
        self._rows, self._length, self._current = batch, n, 0
        self._reserve(batch, capacity)
        self._feeds = {"encoder_hidden_states": np.ascontiguousarray(hidden, dtype=self.dtype), "encoder_attention_mask": mask}
        binding = self.first.io_binding()
        binding.bind_cpu_input("input_ids", input_ids)
        for name, value in self._feeds.items():
            binding.bind_cpu_input(name, value)
        if self.merged:
            empty = np.zeros((batch, self._heads, 0, self._head_dim), dtype=self.dtype)
            for name in self._self_names + self._cross_names:
                binding.bind_cpu_input(PAST + name[len(PRESENT):], empty)
            binding.bind_cpu_input(USE_CACHE, np.array([False]))
        for name in self._first_outputs:  # once a window: let ONNX Runtime allocate, then move the cache in
            binding.bind_output(name)
        outputs = dict(zip(self._first_outputs, run_bound(self.first, binding, "decoder")))
        size = self._rows * self._heads * n * self._head_dim
        for name in self._self_names:
            self._buffers[name][0][:size] = outputs[name].numpy().reshape(-1)
        self._cross = {PAST + name[len(PRESENT):]: outputs[name] for name in self._cross_names}
        return self._last_logits(outputs["logits"].numpy())

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        """Feed one new token per row (``[rows, 1]``); returns its logits."""
        past, present = self._current, 1 - self._current
        binding = self.with_past.io_binding()
        binding.bind_cpu_input("input_ids", input_ids)
        for name, value in self._feeds.items():
            if name in self._with_past_inputs:
                binding.bind_cpu_input(name, value)
        for name in self._self_names:
            self._bind_cache_input(binding, PAST + name[len(PRESENT):], self._buffers[name][past], self._length)
        for name, value in self._cross.items():
            binding.bind_ortvalue_input(name, value)
        if self.merged:
            binding.bind_cpu_input(USE_CACHE, np.array([True]))
        binding.bind_output("logits")
        for name in self._self_names:
            self._bind_cache_output(binding, name, present, self._length + 1)
        for name in self._cross_names if self.merged else ():
            binding.bind_output(name)  # the merged file's placeholders; never read
        outputs = run_bound(self.with_past, binding, "decoder")
        self._length += 1
        self._current = present
        return self._last_logits(outputs[0].numpy())

    def _reserve(self, batch: int, capacity: int) -> None:
        """Two buffers per self-attention tensor, big enough for the window; kept across windows and jobs."""
        size = batch * self._heads * capacity * self._head_dim
        for name in self._self_names:
            buffers = self._buffers.get(name)
            if buffers is None or buffers[0].size < size or buffers[0].dtype != self.dtype:
                self._buffers[name] = [np.empty(size, dtype=self.dtype), np.empty(size, dtype=self.dtype)]

    def _shape(self, length: int) -> tuple[int, int, int, int]:
        return (self._rows, self._heads, length, self._head_dim)

    def _bind_cache_input(self, binding: ort.IOBinding, name: str, buffer: np.ndarray, length: int) -> None:
        binding.bind_input(name, "cpu", 0, self.dtype, self._shape(length), buffer.ctypes.data)

    def _bind_cache_output(self, binding: ort.IOBinding, name: str, which: int, length: int) -> None:
        buffer = self._buffers[name][which]
        if self._rows * self._heads * length * self._head_dim > buffer.size:
            raise LofiError(MODEL_INFERENCE_FAILED, f"the decoder cache outgrew its {buffer.size} reserved values")
        binding.bind_output(name, "cpu", 0, self.dtype, self._shape(length), buffer.ctypes.data)

    @staticmethod
    def _last_logits(logits: np.ndarray) -> np.ndarray:
        last = logits[:, -1, :].astype(np.float32)
        if not np.isfinite(last).all():
            raise LofiError(MODEL_INFERENCE_FAILED, "the decoder produced NaN or infinite logits (numerical instability)")
        return last


SEQLENS_K, TOTAL_LENGTH, PAST_LENGTH = "seqlens_k", "total_sequence_length", "past_sequence_length"
STEP_INPUTS = ("input_ids", "encoder_attention_mask", SEQLENS_K, TOTAL_LENGTH, PAST_LENGTH)
CROSS_INPUTS = ("encoder_hidden_states",)


@dataclass
class InPlaceDecoder:
    """The decoder over the in-place graphs of :mod:`lofi_engine.musicgen.inplace_graph`.

    One buffer per self-attention tensor, ``[rows, heads, capacity, head_dim]``, is bound as both the past and the
    present of GroupQueryAttention: a step writes its new key/value into it at the position it is told and reads
    the cache once; nothing is copied or allocated for the cache. ``cross`` computes the cross-attention
    keys/values once per window. Prefill and steps run the same graph (it is causal for any number of positions).
    Same interface as :class:`CachedDecoder`.
    """

    step_session: ort.InferenceSession
    cross: ort.InferenceSession
    merged: bool = False
    """Which published form it was derived from (reported, not used)."""
    device: str = "cpu"
    """Where the cache lives: "cpu" (numpy memory) or an ONNX Runtime device ("cuda"): then the cache buffers and
    the cross-attention values are ONNX Runtime's on that device, and only tokens and logits cross to the host."""
    dtype: type[np.floating] = field(init=False)
    _self_names: list[str] = field(init=False)  # past_key_values.{i}.decoder.{key,value}
    _heads: int = field(init=False)
    _head_dim: int = field(init=False)
    _buffers: dict[str, np.ndarray | ort.OrtValue] = field(init=False, default_factory=dict)
    _block: np.ndarray | None = field(init=False, default=None)
    _cross_values: dict[str, ort.OrtValue] = field(init=False, default_factory=dict)
    _mask: np.ndarray = field(init=False)
    _binding: ort.IOBinding = field(init=False)
    _rows: int = field(init=False, default=0)
    _capacity: int = field(init=False, default=0)
    _length: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        inputs = self.step_session.get_inputs()
        self._self_names = [i.name for i in inputs if i.name.startswith(PAST) and ".decoder." in i.name]
        sample = next(i for i in inputs if i.name == self._self_names[0])
        self.dtype = np.float16 if sample.type == "tensor(float16)" else np.float32
        self._heads, self._head_dim = int(sample.shape[1]), int(sample.shape[3])
        self._cross_inputs = {i.name for i in self.cross.get_inputs()}
        self._cross_outputs = [o.name for o in self.cross.get_outputs()]

    @property
    def in_place(self) -> bool:
        return True

    def cache_bytes_per_position(self, rows: int) -> int:
        """Cache bytes a step reads per cached position: once."""
        return len(self._self_names) * rows * self._heads * self._head_dim * np.dtype(self.dtype).itemsize

    def release(self) -> None:
        """Let the cache buffers go between jobs (the next ``start`` reserves them again)."""
        self._buffers.clear()
        self._block = None
        self._cross_values.clear()
        self._binding = self.step_session.io_binding()
        self._capacity = 0

    @property
    def first(self) -> ort.InferenceSession:
        """The session that prefills (the step graph: same names as :class:`CachedDecoder`)."""
        return self.step_session

    @property
    def with_past(self) -> ort.InferenceSession:
        return self.step_session

    def start(self, input_ids: np.ndarray, hidden: np.ndarray, mask: np.ndarray, capacity: int) -> np.ndarray:
        """Prefill ``input_ids`` ``[rows, n]`` from an empty cache that will grow to ``capacity`` positions;
        returns the last position's logits."""
        rows = hidden.shape[0]
        self._reserve(rows, capacity)
        self._mask = np.ascontiguousarray(mask, dtype=np.int64)
        feeds = {"encoder_hidden_states": np.ascontiguousarray(hidden, dtype=self.dtype), "encoder_attention_mask": self._mask, "input_ids": input_ids}
        binding = self.cross.io_binding()
        for name in self._cross_inputs:
            binding.bind_cpu_input(name, feeds[name])
        for name in self._cross_outputs:
            binding.bind_output(name, self.device)
        values = run_bound(self.cross, binding, "decoder")
        self._cross_values = {PAST + name[len(PRESENT):]: value for name, value in zip(self._cross_outputs, values)}
        self._length = 0
        return self._run(input_ids)

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        """Feed one new token per row (``[rows, 1]``); returns its logits."""
        return self._run(input_ids)

    def _run(self, input_ids: np.ndarray) -> np.ndarray:
        n = input_ids.shape[1]
        total = self._length + n
        if total > self._capacity:
            raise LofiError(MODEL_INFERENCE_FAILED, f"the decoder cache outgrew its {self._capacity} reserved positions")
        binding = self._binding if self._length else self._bind_window()
        binding.bind_output("logits")
        binding.bind_cpu_input("input_ids", input_ids)
        binding.bind_cpu_input(PAST_LENGTH, np.array(self._length, dtype=np.int64))
        binding.bind_cpu_input(SEQLENS_K, np.full(self._rows, total - 1, dtype=np.int32))
        binding.bind_cpu_input(TOTAL_LENGTH, np.array(total, dtype=np.int32))
        outputs = run_bound(self.step_session, binding, "decoder")
        self._length = total
        return CachedDecoder._last_logits(outputs[0].numpy())

    def _bind_window(self) -> ort.IOBinding:
        """One binding for the whole window: the cache buffers (as past and present), the cross-attention values
        and the mask stay bound; a step only rebinds its token and positions."""
        binding = self._binding = self.step_session.io_binding()
        binding.bind_output("logits")  # first: the logits are output 0 (rebinding a name keeps its place)
        binding.bind_cpu_input("encoder_attention_mask", self._mask)
        for name, value in self._cross_values.items():
            binding.bind_ortvalue_input(name, value)
        shape = (self._rows, self._heads, self._capacity, self._head_dim)
        for name in self._self_names:
            buffer = self._buffers[name]
            if isinstance(buffer, ort.OrtValue):
                binding.bind_ortvalue_input(name, buffer)
                binding.bind_ortvalue_output(PRESENT + name[len(PAST):], buffer)
            else:
                binding.bind_input(name, "cpu", 0, self.dtype, shape, buffer.ctypes.data)
                binding.bind_output(PRESENT + name[len(PAST):], "cpu", 0, self.dtype, shape, buffer.ctypes.data)
        return binding

    def _reserve(self, rows: int, capacity: int) -> None:
        """One buffer per self-attention tensor, kept across windows while it is big enough. All of them are
        slices of one allocation: one mapping of zero pages that only become memory as positions are written,
        and that goes back to the system whole on :meth:`release` (separate buffers of a few MB each would come
        from the heap, already touched, and stay with the process after they are freed)."""
        if self.device != "cpu":
            self._reserve_on_device(rows, capacity)
            return
        per_position = rows * self._heads * self._head_dim
        tensors = len(self._self_names)
        if self._block is None or self._block.size < per_position * capacity * tensors or self._block.dtype != self.dtype:
            self._block = None  # the old one goes before the new one is mapped
            self._block = np.zeros(per_position * capacity * tensors, dtype=self.dtype)
        self._rows = rows
        self._capacity = self._block.size // tensors // per_position
        size = per_position * self._capacity
        self._buffers = {name: self._block[i * size : (i + 1) * size] for i, name in enumerate(self._self_names)}

    def _reserve_on_device(self, rows: int, capacity: int) -> None:
        """One ONNX Runtime buffer per tensor on the device, kept across windows while it is big enough (the
        positions past the valid length are never read, so it needs no clearing)."""
        if not self._buffers or self._rows != rows or self._capacity < capacity:
            self._buffers = {}  # the old ones go before the new ones are allocated
            shape = [rows, self._heads, capacity, self._head_dim]
            self._buffers = {name: ort.OrtValue.ortvalue_from_shape_and_type(shape, self.dtype, self.device, 0) for name in self._self_names}
            self._capacity = capacity
        self._rows = rows

    def cache_addresses(self) -> dict[str, int]:
        """Where each self-attention buffer lives (tests check that steps never move it)."""
        return {name: b.data_ptr() if isinstance(b, ort.OrtValue) else b.ctypes.data for name, b in self._buffers.items()}
