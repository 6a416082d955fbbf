"""Issue 21 item 4: tempo, key and time signature on every request (library, CLI, JSON-RPC; Neovim in
test_nvim_controls), checked once, read by MusicGen as words after the prompt, recorded with the track and part of
its id. ACE-Step's conditioning is checked against diffusers in test_ace_step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PROMPT, TINY

from lofi_engine import LofiError, MusicGen
from lofi_engine.shared.music import MusicalControls
from lofi_engine.shared.request import GenerateRequest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        ({"bpm": 80, "key": "C minor", "time_signature": 3}, {"bpm": 80, "key": "C minor", "time_signature": 3}),
        ({"bpm": 30.0, "key": "f# MAJOR"}, {"bpm": 30, "key": "F# major"}),
        ({"bpm": 300, "key": "bb min", "time_signature": 6}, {"bpm": 300, "key": "Bb minor", "time_signature": 6}),
        ({"key": "E♭ maj"}, {"key": "Eb major"}),
        ({}, {}),
    ],
)
def test_controls_are_read_and_written_one_way(given: dict, parsed: dict) -> None:
    request = GenerateRequest.parse({"prompt": PROMPT, **given})
    assert request.music.given() == parsed
    assert {k: v for k, v in request.describe().items() if k in ("bpm", "key", "time_signature")} == parsed


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"bpm": 29}, "bpm must be a whole number from 30 to 300"),
        ({"bpm": 301}, "from 30 to 300"),
        ({"bpm": 80.5}, "whole number"),
        ({"bpm": "fast"}, "whole number"),
        ({"bpm": True}, "whole number"),
        ({"key": "H minor"}, "key must be a note A to G"),
        ({"key": "C"}, "then major or minor"),
        ({"key": "C dorian"}, '"C minor", "F# major"'),
        ({"key": 5}, "key must be"),
        ({"time_signature": 5}, "time_signature must be 2, 3, 4 or 6"),
        ({"time_signature": "3"}, "2, 3, 4 or 6"),
        ({"time_signature": True}, "2, 3, 4 or 6"),
    ],
)
def test_a_bad_control_is_refused_with_its_range(given: dict, words: str) -> None:
    with pytest.raises(LofiError) as err:
        GenerateRequest.parse({"prompt": PROMPT, **given})
    assert err.value.code == "INVALID_PARAMS" and words in err.value.message, err.value.message


def test_controls_are_part_of_the_track_id_and_plain_requests_keep_theirs() -> None:
    plain = GenerateRequest.parse({"prompt": PROMPT, "seed": 1})
    with_bpm = GenerateRequest.parse({"prompt": PROMPT, "seed": 1, "bpm": 80})
    again = GenerateRequest.parse({"prompt": PROMPT, "seed": 1, "bpm": 80.0})
    other_key = GenerateRequest.parse({"prompt": PROMPT, "seed": 1, "bpm": 80, "key": "C minor"})
    ids = {r.track_id("v1") for r in (plain, with_bpm, other_key)}
    assert len(ids) == 3 and with_bpm.track_id("v1") == again.track_id("v1")
    assert GenerateRequest.parse({"prompt": PROMPT, "seed": 1, "bpm": None}).track_id("v1") == plain.track_id("v1")


def test_musicgen_reads_them_as_words_after_the_prompt(tiny: MusicGen) -> None:
    """As it was trained: "lofi …, 80 bpm, C minor, 3/4 time" is what the text encoder gets."""
    assert MusicalControls(80, "C minor", 3).words() == "80 bpm, C minor, 3/4 time"
    assert MusicalControls(time_signature=6).words() == "6/8 time"
    controlled = tiny.generate(PROMPT, 5.0, seed=5, bpm=80, key="c minor", time_signature=3)
    spelled = tiny.generate(f"{PROMPT}, 80 bpm, C minor, 3/4 time", 5.0, seed=5)
    plain = tiny.generate(PROMPT, 5.0, seed=5)
    assert np.array_equal(controlled.codes, spelled.codes)
    assert not np.array_equal(controlled.codes, plain.codes)
    assert controlled.prompt == PROMPT  # the user's prompt is what the track is called


def lofi(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lofi_engine", *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO), **env})


def test_the_cli_takes_them_and_prints_them_in_its_json_line(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = lofi("generate", PROMPT, "--model-dir", str(TINY), "--duration", "5", "--seed", "4", "--bpm", "80", "--key", "c minor",
                "--time-signature", "3", "--output", str(tmp_path / "a.wav"), env=env)
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    assert (meta["bpm"], meta["key"], meta["time_signature"]) == (80, "C minor", 3)
    bad = lofi("generate", PROMPT, "--model-dir", str(TINY), "--bpm", "500", "--output", str(tmp_path / "b.wav"), env=env)
    assert bad.returncode != 0 and "INVALID_PARAMS: bpm must be a whole number from 30 to 300" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "b.wav").exists()


def test_json_rpc_generate_records_them_with_the_track(tmp_path: Path) -> None:
    from test_rpc import Server

    server = Server(tmp_path / "cache")
    try:
        music = {"bpm": 92, "key": "F# major", "time_signature": 4}
        reply = server.call("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 2, **music})
        tid = reply["result"]["track_id"]
        start = server.read_until(lambda m: m.get("method") == "generation_start")["params"]
        assert {k: start[k] for k in music} == music
        complete = server.read_until(lambda m: m.get("method") == "generation_complete")["params"]
        assert complete["track_id"] == tid and {k: complete[k] for k in music} == music
        listed = server.call("cache_list", id=2)["result"]
        assert {k: listed[0][k] for k in music} == music
        refused = server.call("generate", {"prompt": PROMPT, "key": "C lydian"}, id=3)
        assert refused["error"]["data"]["code"] == "INVALID_PARAMS" and "major or minor" in refused["error"]["message"]
    finally:
        assert server.close() == 0


def test_the_radio_stream_reads_them_too(tiny: MusicGen) -> None:
    from lofi_engine.musicgen.radio import ContinuousStream

    def first_window(prompt: str, **music) -> np.ndarray:
        request = GenerateRequest.parse({"prompt": prompt, "seed": 3, **music})
        return ContinuousStream(tiny, request, window_sec=6.0, context_sec=2.0).next_window().codes

    assert np.array_equal(first_window(PROMPT, bpm=80, key="C minor"), first_window(f"{PROMPT}, 80 bpm, C minor"))


def test_radio_start_takes_them_and_refuses_a_bad_one_leaving_the_radio_as_it_was(heard_service) -> None:
    client, events, out = heard_service(model_dir=str(TINY), radio_window_sec=6, radio_context_sec=2)
    state = client.request("radio_start", {"prompt": PROMPT, "seed": 5, "bpm": 80, "key": "c minor", "time_signature": 4})
    assert (state["bpm"], state["key"], state["time_signature"]) == (80, "C minor", 4)
    events.wait_event("radio_segment", timeout=60)
    with pytest.raises(LofiError) as err:
        client.request("radio_start", {"prompt": PROMPT, "bpm": 10})
    assert err.value.code == "INVALID_PARAMS" and "from 30 to 300" in err.value.message
    assert client.request("radio")["bpm"] == 80
    client.request("radio_stop")
