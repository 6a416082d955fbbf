"""MusicGen's delay pattern: codebook k runs k steps behind codebook 0.

A window of generation has ``length`` positions. Position 0 is the start token for every codebook. Codebook k is
forced to the pad token at positions ``j <= k`` and ``j - k >= length - 3``; a prompt of F undelayed frames fills
positions ``k + 1 … F + k``; every other position is predicted.
"""

from __future__ import annotations

import numpy as np

PREDICTED = -1


def window_length(prompt_frames: int, new_frames: int, num_codebooks: int) -> int:
    """Positions in a window that continues ``prompt_frames`` by ``new_frames``."""
    return 1 + prompt_frames + new_frames + num_codebooks - 1


def frames_complete(position: int, prompt_frames: int, new_frames: int, num_codebooks: int) -> int:
    """Aligned frames of a window (its prompt included) that are final once ``position`` is filled: codebook
    ``num_codebooks - 1`` is the last to reach a frame."""
    return max(0, min(position - num_codebooks + 1, prompt_frames + new_frames))


def build_pattern(prompt: np.ndarray, length: int, pad: int) -> np.ndarray:
    """The delayed ``[codebooks, length]`` grid: forced values where known, ``PREDICTED`` where to sample."""
    num_codebooks, prompt_frames = prompt.shape
    pattern = np.full((num_codebooks, length), PREDICTED, dtype=np.int64)
    for k in range(num_codebooks):
        pattern[k, : k + 1] = pad
        pattern[k, k + 1 : k + 1 + prompt_frames] = prompt[k]
        pattern[k, length - num_codebooks + 1 + k :] = pad
    return pattern


def undelay(delayed: np.ndarray, frames: int) -> np.ndarray:
    """Read ``frames`` aligned frames back out of a delayed grid: codebook k starts at position k + 1."""
    return np.stack([delayed[k, k + 1 : k + 1 + frames] for k in range(delayed.shape[0])])
