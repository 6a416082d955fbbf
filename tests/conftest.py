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


@pytest.fixture
def engine(tmp_path: Path):
    """A started-on-demand EngineClient over the tiny model, its events collected; closed after the test."""
    from events import EventLog

    from lofi_engine.service.client import EngineClient
    from lofi_engine.shared.settings import Settings

    clients = []

    def make(python: str | None = None, **config):
        events = EventLog()
        settings = {"model_dir": str(TINY), "cache_dir": str(tmp_path / "cache"), **config}
        client = EngineClient(Settings.from_dict(settings), events, python=python, log_path=tmp_path / "engine.log")
        clients.append(client)
        return client, events

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def heard_service(tmp_path: Path):
    """``make(**settings) -> (client, events, out)``: an EngineClient whose player is a real mpv writing what it plays
    to ``out`` (a float WAV) instead of a sound card; closed after the test."""
    from events import EventLog
    from lofi_engine.service.client import EngineClient
    from lofi_engine.shared.settings import Settings

    made = []

    def make(**settings):
        out = tmp_path / "out.wav"
        config = Settings.from_dict({
            "cache_dir": str(tmp_path / "cache"),
            "player_command": f"mpv --no-config --really-quiet --no-video --ao=pcm --ao-pcm-file={out} --ao-pcm-waveheader=yes",
            **settings,
        })
        events = EventLog()
        client = EngineClient(config, events, log_path=tmp_path / "engine.log")
        made.append(client)
        return client, events, out

    yield make
    for client in made:
        client.close()


@pytest.fixture
def nvim(tmp_path: Path, monkeypatch):
    """A real headless Neovim with lofi set up on the tiny model and a private cache; quits after the test."""
    from nvim_session import quit_nvim, start_nvim

    session = start_nvim(tmp_path / "home", monkeypatch.setenv)
    session.exec_lua(
        "require('lofi').setup(...)",
        {"model": {"dir": str(TINY)}, "cache": {"dir": str(tmp_path / "cache")}, "autoplay": False,
         "player": {"cmd": ["mpv", "--ao=null", "--no-video", "--really-quiet"]}},
    )
    # Capture notifications so tests can read what the user would see.
    session.exec_lua("_G.notes = {}; vim.notify = function(msg, level, opts) table.insert(_G.notes, {msg = msg, level = level}) end")
    yield session
    quit_nvim(session)
