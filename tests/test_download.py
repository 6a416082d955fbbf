"""Model acquisition (FR-024…FR-027): consent first, real huggingface_hub downloads from a local stand-in Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PROMPT, TINY
from fake_hub import FakeHub, serve_tiny

from lofi_engine.store.catalogue import LICENSE, VARIANTS, variants

REPO = Path(__file__).resolve().parents[1]
SMALL = VARIANTS["small"].files
TOTAL = sum((TINY / name).stat().st_size for name in SMALL)


@pytest.fixture
def hub(monkeypatch, tmp_path: Path):
    fake = serve_tiny(monkeypatch, tmp_path)
    yield fake
    fake.stop()


def hub_blobs(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "hf").rglob("blobs/*") if p.is_file()]


def test_first_request_asks_consent_and_refusal_downloads_nothing(engine, hub: FakeHub, tmp_path: Path) -> None:
    client, events = engine(model_dir=None)
    reply = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})
    asked = events.wait_event("consent_required")
    published = variants()["small"].download_bytes  # known without the network: nothing reaches the Hub before the answer
    assert published == TOTAL
    assert asked == {"track_id": reply["track_id"], "variant": "small", "what": "the MusicGen small model", "size_bytes": published, "files": sorted(SMALL), "license": LICENSE}
    assert hub.requests == []
    assert client.engine_pid is None  # decided in the queue: the job was never sent to the engine
    assert client.request("queue")["awaiting_consent"] is True
    second = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 2})
    assert events.wait_event("consent_required", track_id=second["track_id"])["size_bytes"] == published
    assert client.request("download", {"consent": False}) == {"status": "declined", "variant": "small"}
    for tid in (reply["track_id"], second["track_id"]):
        assert events.wait_event("generation_error", track_id=tid)["code"] == "MODEL_NOT_FOUND"
    assert hub.gets() == [] and hub_blobs(tmp_path) == []
    assert client.request("queue") == {"running": None, "pending": [], "awaiting_consent": False}


def test_consent_downloads_with_progress_then_generates(engine, hub: FakeHub, tmp_path: Path) -> None:
    client, events = engine(model_dir=None)
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    events.wait_event("consent_required")
    assert client.request("download", {"consent": True})["status"] == "downloading"
    done = events.wait_event("download_complete")
    progress = events.names("download_progress")
    assert progress[-1]["bytes_downloaded"] == progress[-1]["bytes_total"] == TOTAL and progress[-1]["percent"] == 100
    assert [p["bytes_downloaded"] for p in progress] == sorted(p["bytes_downloaded"] for p in progress)
    complete = events.wait_event("generation_complete", track_id=tid)
    assert complete["model_version"] == "musicgen-small-fp32-v1"
    model_dir = Path(done["path"])
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(SMALL)
    assert all((model_dir / name).read_bytes() == (TINY / name).read_bytes() for name in SMALL)
    assert len(hub_blobs(tmp_path)) == len(SMALL)
    # Consent is remembered (FR-025): a new client goes straight to work.
    later, later_events = engine(model_dir=None)
    assert later.request("status")["model_available"] is True
    tid2 = later.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 2})["track_id"]
    later_events.wait_event("generation_complete", track_id=tid2)
    assert not later_events.names("consent_required") and len(hub.gets()) == len(SMALL)


def test_a_dropped_connection_resumes_where_it_stopped(engine, hub: FakeHub) -> None:
    decoder = SMALL["decoder_model_merged.onnx"]
    # Large enough that the client has written whole chunks (10 MB) before the connection drops.
    hub.publish(decoder, np.random.default_rng(0).integers(0, 256, 48 << 20, dtype=np.uint8).tobytes())
    hub.cut_once.add(decoder)
    client, events = engine(model_dir=None)
    client.request("download", {"consent": True})
    done = events.wait_event("download_complete", timeout=120)
    ranges = [rng for path, rng in hub.gets() if path.endswith(decoder)]
    assert len(ranges) == 2 and ranges[0] is None
    resumed_at = int(ranges[1].split("=")[1].split("-")[0])
    assert 0 < resumed_at <= (48 << 20) // 3
    assert (Path(done["path"]) / "decoder_model_merged.onnx").read_bytes() == hub.files[decoder]


@pytest.mark.parametrize("fault", ["truncate", "corrupt"])
def test_a_wrong_sized_or_corrupt_file_fails_and_is_deleted(engine, hub: FakeHub, tmp_path: Path, fault: str) -> None:
    decoder = SMALL["decoder_model_merged.onnx"]
    getattr(hub, fault).add(decoder)
    client, events = engine(model_dir=None)
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    events.wait_event("consent_required")
    client.request("download", {"consent": True})
    error = events.wait_event("download_error", timeout=120)
    assert error["code"] == "MODEL_DOWNLOAD_FAILED" and "decoder_model_merged.onnx" in error["message"]
    assert events.wait_event("generation_error", track_id=tid, timeout=60)["code"] == "MODEL_DOWNLOAD_FAILED"
    assert client.request("status")["model_available"] is False
    sizes = {p.stat().st_size for p in hub_blobs(tmp_path)}
    assert len(hub.files[decoder]) not in sizes and len(hub.files[decoder]) // 2 not in sizes
    assert not [p for p in (tmp_path / "hf").rglob("*") if p.name.endswith(".incomplete")]
    # Fixed on the Hub's side: the next request downloads it again and works.
    getattr(hub, fault).clear()
    tid2 = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 2})["track_id"]
    events.wait_event("generation_complete", track_id=tid2, timeout=120)


def test_offline_mode_is_honoured(engine, hub: FakeHub, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    client, events = engine(model_dir=None)
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    events.wait_event("consent_required", track_id=tid)  # asked first: the question needs no network
    client.request("download", {"consent": True})
    assert events.wait_event("download_error")["code"] == "MODEL_DOWNLOAD_FAILED"
    error = events.wait_event("generation_error", track_id=tid)
    assert error["code"] == "MODEL_DOWNLOAD_FAILED" and "HF_HUB_OFFLINE" in error["message"]
    assert hub.file_requests() == []


def run_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lofi_engine", *args, "--cache-dir", str(cache)], capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=120, env=os.environ.copy(), cwd=REPO,
    )


def test_cli_download_needs_yes_without_a_terminal_then_downloads(hub: FakeHub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    refused = run_cli("download", cache=cache)
    assert refused.returncode == 1 and "--yes" in refused.stderr and hub.gets() == []
    done = run_cli("download", "--yes", cache=cache)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["variant"] == "small" and result["size_bytes"] == TOTAL
    generated = run_cli("generate", PROMPT, "--duration", "5", "--output", str(tmp_path / "t.wav"), cache=cache)
    assert generated.returncode == 0, generated.stderr
    assert json.loads(generated.stdout)["model_version"] == "musicgen-small-fp32-v1"


def test_ace_step_jobs_run_while_the_musicgen_download_question_waits(engine, hub: FakeHub, tmp_path: Path) -> None:
    """A download question blocks only the jobs that need the download."""
    from test_ace_step import ACE_TINY

    client, events = engine(model_dir=None, ace_step_model_dir=str(ACE_TINY))
    musicgen = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})
    events.wait_event("consent_required", track_id=musicgen["track_id"])
    ace = client.request("generate", {"prompt": PROMPT, "duration_sec": 10, "seed": 1, "backend": "ace-step"})
    assert events.wait_event("generation_complete", track_id=ace["track_id"])["backend"] == "ace-step"
    assert [j["track_id"] for j in client.request("queue")["pending"]] == [musicgen["track_id"]]
    assert client.request("download", {"consent": False})["status"] == "declined"
    assert events.wait_event("generation_error", track_id=musicgen["track_id"])["code"] == "MODEL_NOT_FOUND"
    assert hub.gets() == []


def test_the_variant_table_pins_the_published_fp32_files() -> None:
    """Sizes and sha256s of the public record at the pinned revision: the consent question's size needs no network."""
    from lofi_engine.store.catalogue import HUB_REVISION

    assert HUB_REVISION == "675386ca686a378fe9ff739b60fdf29c310b3560"
    small = VARIANTS["small"]
    pinned = {small.files[name]: (check.size, check.sha256) for name, check in small.checks.items()}
    assert pinned["small_fp32/decoder_model_merged.onnx"] == (1_692_230_645, "e316822aa20ffe205dc675cd3a80ccaf332f283eb01a883d05199026ce2ad023")
    assert pinned["small/config.json"] == (7_791, "f290b5e3900a0f4db08eb6f2c09001f2bdbbc0c9bbc958340b8af40a3ae732bc")
    assert len(pinned) == 5 and "small/generation_config.json" not in pinned
    assert 0 < small.download_bytes - sum(size for size, _ in pinned.values()) < 1000  # + generation_config.json
    # int8 shares the fp32 text encoder and EnCodec, so their checks apply there too.
    assert VARIANTS["small-int8"].check("text_encoder.onnx") == small.check("text_encoder.onnx")


def test_a_connection_that_keeps_dropping_says_so_retries_then_resumes_next_time(engine, hub: FakeHub, tmp_path: Path) -> None:
    from lofi_engine.engine.download import ATTEMPTS

    decoder = SMALL["decoder_model_merged.onnx"]
    hub.publish(decoder, np.random.default_rng(1).integers(0, 256, 24 << 20, dtype=np.uint8).tobytes())
    size = len(hub.files[decoder])
    hub.cut_always.add(decoder)
    client, events = engine(model_dir=None)
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    events.wait_event("consent_required")
    client.request("download", {"consent": True})
    message = events.wait_event("download_error", timeout=120)["message"]
    assert events.wait_event("generation_error", track_id=tid)["code"] == "MODEL_DOWNLOAD_FAILED"
    ranges = [rng for path, rng in hub.gets() if path.endswith(decoder)]
    assert len(ranges) == ATTEMPTS  # bounded retries, each resuming where the last one stopped
    starts = [int(r.split("=")[1].split("-")[0]) if r else 0 for r in ranges]
    assert starts[0] == 0 and all(b > a for a, b in zip(starts, starts[1:]))
    got = int(message.split("connection lost at ")[1].split(" ")[0])
    assert f"connection lost at {got} of {size} bytes of {decoder}" in message and got > starts[-1]
    assert "HF_HUB_OFFLINE" not in message and ":LofiDownload" in message
    # The connection is back: the next download goes on from the bytes already on disk.
    hub.cut_always.clear()
    before = len(hub.gets())
    assert client.request("download", {"consent": True})["status"] == "downloading"
    done = events.wait_event("download_complete", timeout=120)
    again = [rng for path, rng in hub.gets()[before:] if path.endswith(decoder)]
    assert again == [f"bytes={got}-"]
    assert (Path(done["path"]) / "decoder_model_merged.onnx").read_bytes() == hub.files[decoder]


def test_offline_first_run_asks_then_says_what_to_do(engine, hub: FakeHub, monkeypatch) -> None:
    """No network at all (nothing listens at HF_ENDPOINT): the question still comes, and the error is useful."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
    client, events = engine(model_dir=None)
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    assert events.wait_event("consent_required", track_id=tid)["size_bytes"] == TOTAL
    client.request("download", {"consent": True})
    message = events.wait_event("generation_error", track_id=tid, timeout=60)["message"]
    assert "cannot reach the HuggingFace Hub: once online" in message  # the cause and what to do first
    assert "at http://127.0.0.1:" in message and "Connection refused" in message
    assert ":LofiDownload" in message and "model.dir" in message and "HF_HUB_OFFLINE" not in message
    # Issue 20 item 5: offline, said at once; no 14 s of retries against a Hub that never answered
    assert "tries" not in message and "retrying" not in client.log_path.read_text()


def test_small_files_are_checked_against_the_pin_or_the_hubs_git_hash(engine, monkeypatch, tmp_path: Path) -> None:
    """A file without a pinned sha256 is checked against the Hub's metadata (the git blob hash of a small file); a
    pinned one against the pin, even when the Hub serves it consistently."""
    generation = SMALL["generation_config.json"]
    fake = serve_tiny(monkeypatch, tmp_path, pin=set(SMALL.values()) - {generation})
    try:
        fake.corrupt.add(generation)
        client, events = engine(model_dir=None)
        client.request("download", {"consent": True})
        message = events.wait_event("download_error")["message"]
        assert generation in message and "git hash does not match the Hub's" in message
        fake.corrupt.clear()
        table = json.loads(Path(fake.catalogue).read_text())
        table["variants"]["small"]["files"]["config.json"]["sha256"] = "0" * 64
        Path(fake.catalogue).write_text(json.dumps(table))
        later, later_events = engine(model_dir=None)
        later.request("download", {"consent": True})
        message = later_events.wait_event("download_error")["message"]
        assert SMALL["config.json"] in message and "does not match the pinned one" in message
        assert later.request("status")["model_available"] is False
    finally:
        fake.stop()


def test_nothing_reaches_the_network_before_consent(hub: FakeHub, tmp_path: Path) -> None:
    """Importing and configuring the download code, and the CLI up to its question: zero requests of any kind."""
    imported = subprocess.run(
        [sys.executable, "-c", "import lofi_engine.engine.download, lofi_engine.engine.worker, lofi_engine.cli"],
        capture_output=True, text=True, env=os.environ.copy(), cwd=REPO, timeout=120,
    )
    assert imported.returncode == 0, imported.stderr
    refused = run_cli("generate", PROMPT, "--duration", "5", cache=tmp_path / "cache")
    assert refused.returncode == 1 and "--yes" in refused.stderr and "Traceback" not in refused.stderr
    assert hub.requests == []
    done = run_cli("download", "--yes", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert hub.requests and all("/resolve/" in path and method in ("HEAD", "GET") for method, path, _ in hub.requests)
