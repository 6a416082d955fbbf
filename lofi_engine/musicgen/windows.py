"""Windowed continuation: how a piece longer than one decoder window is cut into windows.

The first window starts from nothing; each next one is prompted with the last ``CONTEXT_SEC`` of codes of the
piece so far and adds ``WINDOW_SEC - CONTEXT_SEC`` (audiocraft's 30 s window and 18 s stride).
"""

from __future__ import annotations

from dataclasses import dataclass

from lofi_engine.musicgen.delay_pattern import frames_complete

WINDOW_SEC = 30.0
"""Audio generated per decoder window; the decoder's 2048 positions hold ≈ 41 s."""
CONTEXT_SEC = 12.0
"""Codes carried from one window into the next as its prompt (audiocraft's 30 s window, 18 s stride)."""


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


def plan_windows(duration_sec: float, frame_rate: float, num_codebooks: int, prompt_frames: int = 0, max_positions: int = 2048) -> list[Window]:
    """The decoder windows that make ``duration_sec`` of audio at ``frame_rate`` codec frames a second, the first
    continuing ``prompt_frames`` of given codes (audio to continue): that window holds the prompt and new frames up
    to the window's length (at least its stride, within the decoder's ``max_positions``)."""
    total = round(duration_sec * frame_rate)
    window, context = round(WINDOW_SEC * frame_rate), round(CONTEXT_SEC * frame_rate)
    delay = num_codebooks - 1
    first = min(total, max(window - prompt_frames, window - context), max_positions - prompt_frames - delay - 1)
    windows = [Window(prompt_frames, first, first + delay)]
    done = windows[0].new_frames
    while done < total:
        new = min(window - context, total - done)
        windows.append(Window(context, new, new + delay))
        done += new
    return windows


def finished_frames(windows: list[Window], num_codebooks: int) -> list[int]:
    """Frames of the piece that are final after each decoder step of the job (the delay pattern finishes a frame
    ``num_codebooks - 1`` steps after its first codebook; a window's prompt frames were final before it)."""
    finished, before = [], 0
    for w in windows:
        for k in range(w.steps):
            complete = frames_complete(w.prompt_frames + 1 + k, w.prompt_frames, w.new_frames, num_codebooks)
            finished.append(before + max(0, complete - w.prompt_frames))
        before += w.new_frames
    return finished
