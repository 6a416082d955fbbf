"""Issue 21 item 1: EnCodec's weights (what continuing audio needs) come like the model: asked first (their size and
licence in the question), from the pinned revision of facebook/encodec_32khz, verified, resumable; served here by the
local stand-in Hub."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import PROMPT, TINY
from fake_hub import FakeHub, serve_encodec, serve_tiny
from test_download import hub_blobs, run_cli

from lofi_engine import LofiError
from lofi_engine.store.catalogue import ENCODEC, ENCODEC_LICENSE, ENCODEC_REPO, ENCODEC_REVISION

FIXTURES = Path(__file__).parent / "fixtures"
TONE = np.load(FIXTURES / "musicgen-tiny-reference" / "encodec.npz")["tone_1s_audio"].astype(np.float32)


@pytest.fixture
def hub(monkeypatch, tmp_path: Path):
    fake = serve_tiny(monkeypatch, tmp_path)
    fake.encodec = serve_encodec(fake)
    yield fake
    fake.stop()


@pytest.fixture
def mine(tmp_path: Path) -> Path:
    path = tmp_path / "mine.wav"
    soundfile.write(path, TONE, 32000)
    return path


def continue_request(source: Path, seed: int = 2) -> dict:
    return {"prompt": PROMPT, "duration_sec": 5, "seed": seed, "continue_from": str(source)}


def test_continuing_asks_for_encodecs_weights_then_downloads_them_and_continues(engine, hub: FakeHub, mine: Path, tmp_path: Path) -> None:
    client, events = engine()
    tid = client.request("generate", continue_request(mine))["track_id"]
    asked = events.wait_event("consent_required", track_id=tid)
    size = sum(len(data) for data in hub.encodec.values())
    assert asked["variant"] == ENCODEC and asked["size_bytes"] == size and asked["license"] == ENCODEC_LICENSE
    assert asked["files"] == ["config.json", "model.safetensors"] and ENCODEC_REPO in asked["what"]
    assert hub.requests == [] and client.engine_pid is None  # nothing reaches the network, or the engine, before the answer
    plain = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 3})["track_id"]
    events.wait_event("generation_complete", track_id=plain)  # the question blocks only the job that needs the weights
    assert client.request("download", {"consent": True}) == {"status": "downloading", "variant": ENCODEC}
    done = events.wait_event("download_complete", variant=ENCODEC)
    progress = [p for p in events.names("download_progress") if p["variant"] == ENCODEC]
    assert progress[-1]["bytes_downloaded"] == progress[-1]["bytes_total"] == size and progress[-1]["what"] == "EnCodec's weights"
    assert {p.name: p.read_bytes() for p in Path(done["path"]).iterdir()} == hub.encodec
    assert all(f"/{ENCODEC_REPO}/resolve/{ENCODEC_REVISION}/" in path for path, _ in hub.gets())  # the pinned revision
    complete = events.wait_event("generation_complete", track_id=tid)
    assert complete["continue_from"] == str(mine) and complete["duration_sec"] == 6.0
    # the same continuation as with the weights given by hand (encodec_dir), sample for sample
    by_hand, by_hand_events = engine(cache_dir=str(tmp_path / "by-hand"), encodec_dir=str(FIXTURES / "encodec-tiny"))
    assert by_hand.request("generate", continue_request(mine))["track_id"] == tid
    reference = by_hand_events.wait_event("generation_complete", track_id=tid)
    np.testing.assert_array_equal(soundfile.read(complete["path"])[0], soundfile.read(reference["path"])[0])
    # the answer is kept: a new client continues without asking or downloading again
    later, later_events = engine()
    again = later.request("generate", continue_request(mine, seed=4))["track_id"]
    later_events.wait_event("generation_complete", track_id=again)
    assert not later_events.names("consent_required") and len(hub.gets()) == len(hub.encodec)


def test_declining_fails_only_the_continuation_and_downloads_nothing(engine, hub: FakeHub, mine: Path, tmp_path: Path) -> None:
    client, events = engine()
    tid = client.request("generate", continue_request(mine))["track_id"]
    events.wait_event("consent_required", track_id=tid)
    assert client.request("download", {"consent": False, "variant": ENCODEC}) == {"status": "declined", "variant": ENCODEC}
    failed = events.wait_event("generation_error", track_id=tid)
    assert failed["code"] == "MODEL_NOT_FOUND" and "EnCodec's weights" in failed["message"] and "encodec_dir" in failed["message"]
    assert hub.requests == [] and hub_blobs(tmp_path) == []
    with pytest.raises(LofiError) as unknown:
        client.request("download", {"consent": True, "variant": "encodec"})
    assert unknown.value.code == "INVALID_PARAMS" and ENCODEC in unknown.value.message
    assert client.request("queue") == {"running": None, "pending": [], "awaiting_consent": False}
    plain = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 3})["track_id"]
    events.wait_event("generation_complete", track_id=plain)


def test_without_the_model_either_it_asks_for_the_model_then_for_encodec(engine, hub: FakeHub, mine: Path) -> None:
    client, events = engine(model_dir=None)
    tid = client.request("generate", continue_request(mine))["track_id"]
    assert events.wait_event("consent_required", track_id=tid)["variant"] == "small"
    client.request("download", {"consent": True})
    events.wait_event("download_complete", variant="small")
    assert events.wait_event("consent_required", variant=ENCODEC)["track_id"] == tid  # asked once the model is here
    assert client.request("download", {"consent": True})["variant"] == ENCODEC
    assert events.wait_event("generation_complete", track_id=tid)["duration_sec"] == 6.0


def test_a_dropped_connection_resumes_and_a_corrupt_file_is_refused(engine, hub: FakeHub, mine: Path, tmp_path: Path) -> None:
    hub.corrupt.add("model.safetensors")
    client, events = engine()
    tid = client.request("generate", continue_request(mine))["track_id"]
    events.wait_event("consent_required", track_id=tid)
    client.request("download", {"consent": True})
    error = events.wait_event("download_error", variant=ENCODEC)
    assert error["code"] == "MODEL_DOWNLOAD_FAILED" and "model.safetensors is corrupt" in error["message"]
    assert events.wait_event("generation_error", track_id=tid)["code"] == "MODEL_DOWNLOAD_FAILED"
    assert not (tmp_path / "cache" / "models" / ENCODEC).exists()
    hub.corrupt.clear()
    hub.cut_once.add("model.safetensors")
    retry = client.request("generate", continue_request(mine, seed=5))["track_id"]  # consent was given: no question
    events.wait_event("generation_complete", track_id=retry)
    ranges = [rng for path, rng in hub.gets() if path.endswith("model.safetensors")]
    assert ranges[-1] is not None and ranges[-1].startswith("bytes=")  # the last request resumed the cut transfer


def test_the_cli_asks_for_yes_downloads_with_it_and_continues(hub: FakeHub, mine: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ("generate", PROMPT, "--model-dir", str(TINY), "--continue-from", str(mine), "--duration", "5", "--seed", "2")
    refused = run_cli(*args, "--output", str(tmp_path / "no.wav"), cache=cache)
    assert refused.returncode == 1 and "not downloaded: EnCodec's weights" in refused.stderr and "--yes" in refused.stderr
    assert hub.gets() == [] and not (tmp_path / "no.wav").exists()
    done = run_cli(*args, "--yes", "--output", str(tmp_path / "out.wav"), cache=cache)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["duration_sec"] == 6.0
    assert (cache / "models" / ENCODEC / "model.safetensors").read_bytes() == hub.encodec["model.safetensors"]
    again = run_cli("download", "--encodec", cache=cache)
    assert again.returncode == 0 and "already here" in again.stderr and len(hub.gets()) == 2


def test_the_radio_from_audio_asks_for_the_weights_too(heard_service, hub: FakeHub, mine: Path) -> None:
    client, events, _ = heard_service(model_dir=str(TINY), radio_window_sec=6, radio_context_sec=2)
    started = client.request("radio_start", {"prompt": PROMPT, "from": str(mine)})
    asked = events.wait_event("consent_required", variant=ENCODEC)
    assert "track_id" not in asked and client.request("radio")["mode"] == "starting" and hub.requests == []
    client.request("download", {"consent": True})
    assert events.wait_event("radio_segment", stream_id=started["stream_id"], timeout=60)["start_sec"] == 0.0
    client.request("radio_stop")
