"""Tracks are written to a temp name and renamed: a failure never leaves a file that looks complete."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from lofi_engine import LofiError
from lofi_engine.engine.wav import write_wav


def test_written_wav_round_trips(tmp_path: Path) -> None:
    audio = np.sin(np.linspace(0, 100, 32000)).astype(np.float32) * 0.5
    path = write_wav(tmp_path / "sub" / "t.wav", audio, 32000)
    back, rate = soundfile.read(path, dtype="float32")
    assert rate == 32000 and np.abs(back - audio).max() < 1e-4
    assert os.listdir(path.parent) == ["t.wav"]


def test_failure_mid_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "t.wav"
    target.mkdir()  # the rename onto a directory fails after the data was written
    with pytest.raises(LofiError) as info:
        write_wav(target, np.zeros(32000, np.float32), 32000)
    assert info.value.code == "WRITE_FAILED" and str(target) in info.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.wav"] and target.is_dir()
