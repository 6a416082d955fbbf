"""`lofi generate`: a WAV any player opens, metadata as one JSON line, `CODE: message` and non-zero on errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
from conftest import TINY

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def lofi(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lofi_engine", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_generate_writes_a_wav_and_prints_metadata(tmp_path: Path) -> None:
    out = tmp_path / "song.wav"
    done = lofi("generate", "lofi hip hop, jazzy piano", "--model-dir", str(TINY), "--duration", "10", "--seed", "42", "--output", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    meta = json.loads(lines[0])
    assert set(meta) == {"track_id", "path", "duration_sec", "sample_rate", "prompt", "seed", "generation_time_sec", "model_version", "backend", "channels"}
    assert meta["backend"] == "musicgen" and meta["channels"] == 1
    assert meta["path"] == str(out) and meta["seed"] == 42 and meta["duration_sec"] == 10.0 and meta["sample_rate"] == 32000
    info = soundfile.info(str(out))
    assert (info.samplerate, info.channels, info.frames, info.format) == (32000, 1, 320000, "WAV")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav", "xdg-cache"], "no temp file left behind"

    again = lofi("generate", "lofi hip hop, jazzy piano", "--model-dir", str(TINY), "--duration", "10", "--seed", "42", "--output", str(tmp_path / "again.wav"))
    assert json.loads(again.stdout)["track_id"] == meta["track_id"]
    assert (tmp_path / "again.wav").read_bytes() == out.read_bytes()


def test_default_output_is_named_after_the_track(tmp_path: Path) -> None:
    done = lofi("generate", "rain", "--model-dir", str(TINY), "--duration", "5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    assert Path(meta["path"]) == tmp_path / f"{meta['track_id']}.wav"
    assert soundfile.info(meta["path"]).frames == 5 * 32000


def test_errors_exit_non_zero_with_code_and_message(tmp_path: Path) -> None:
    cases = {
        ("generate", "x", "--duration", "4", "--model-dir", str(tmp_path / "none")): "INVALID_DURATION: ",
        ("generate", "  ", "--model-dir", str(TINY)): "INVALID_PROMPT: ",
        ("generate", "x", "--model-dir", str(tmp_path / "none")): "MODEL_NOT_FOUND: ",
    }
    for args, prefix in cases.items():
        done = lofi(*args)
        assert done.returncode == 1
        assert done.stderr.strip().splitlines()[-1].startswith(prefix), done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".wav", ".part", ".json")], "no track written"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "lofi"
    done = subprocess.run([str(script), "generate", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--model-dir" in done.stdout and "--duration" in done.stdout
