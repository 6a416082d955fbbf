from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lofi_engine import MusicGen

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "musicgen-tiny"
TINY_FP16 = FIXTURES / "musicgen-tiny-fp16"
TINY_INT8 = FIXTURES / "musicgen-tiny-int8"
REFERENCE = FIXTURES / "musicgen-tiny-reference"
PROMPT = json.loads((REFERENCE / "reference.json").read_text())["prompt"]


@pytest.fixture(scope="session")
def tiny() -> MusicGen:
    """The tiny fp32 model with its merged decoder, loaded once."""
    return MusicGen.load(TINY, device="cpu")


@pytest.fixture
def tiny_copy(tmp_path: Path) -> Path:
    """A private copy of the tiny model directory a test may damage."""
    return Path(shutil.copytree(TINY, tmp_path / "model"))


def reference(name: str) -> np.ndarray:
    return np.load(REFERENCE / f"{name}.npy")
