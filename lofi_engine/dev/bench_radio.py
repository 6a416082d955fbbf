"""The radio's `continue` stream (issue 14 item 6): its real-time factor for a variant, measured over a few windows,
and what other window/context lengths would cost, priced from the costs this machine learned for that variant."""

from __future__ import annotations

import time
from typing import Any

from lofi_engine.musicgen.costs import StepCosts, job_units
from lofi_engine.musicgen.model import MusicGen
from lofi_engine.musicgen.radio import ContinuousStream
from lofi_engine.musicgen.streaming import DECODE_CONTEXT, LOOKAHEAD
from lofi_engine.musicgen.windows import Window
from lofi_engine.shared.request import GenerateRequest
from lofi_engine.shared.settings import RadioConfig

WINDOWS_SEC = (10.0, 15.0, 20.0, 25.0, 30.0)
CONTEXTS_SEC = (3.0, 5.0, 8.0)


def measure_stream(model: MusicGen, windows: int = 3) -> dict[str, Any]:
    """Real-time factor (generation seconds per second of audio) of the default window and context."""
    config = RadioConfig()
    stream = ContinuousStream(model, GenerateRequest.parse({"prompt": "lofi hip hop, jazzy piano", "seed": 7}, "musicgen"),
                              config.radio_window_sec, config.radio_context_sec)
    made = []
    for _ in range(windows):
        started = time.perf_counter()
        segment = stream.next_window()
        made.append((time.perf_counter() - started, len(segment.audio) / model.sample_rate))
    continuing = made[1:]
    return {
        "window_sec": config.radio_window_sec, "context_sec": config.radio_context_sec,
        "first_window_rtf": made[0][0] / made[0][1],
        "continuing_rtf": sum(t for t, _ in continuing) / sum(a for _, a in continuing),
        "windows": [{"generation_sec": t, "audio_sec": a} for t, a in made],
    }


def predicted_rtf(costs: StepCosts, window_sec: float, context_sec: float, frame_rate: float = 50, codebooks: int = 4) -> float:
    """Seconds a continuing window costs per second of new audio at these prices: the context's prefill, the steps
    (each reading the cache so far) and the segment's decode with its context and lookahead."""
    context, new = round(context_sec * frame_rate), round((window_sec - context_sec) * frame_rate)
    window = Window(context, new, new + codebooks - 1)
    units = sum(costs.unit(kind, position) for kind, position in job_units([window]))
    return (units + costs.decode(new + DECODE_CONTEXT + LOOKAHEAD)) / (window_sec - context_sec)


def window_table(costs: StepCosts) -> dict[str, float]:
    return {f"{w:g}/{c:g}": predicted_rtf(costs, w, c) for w in WINDOWS_SEC for c in CONTEXTS_SEC if c < w}

