"""ACE-Step 1.5 turbo (issue 6): the ONNX pipeline against diffusers, shapes, seeds, progress, manifest checks.

The fixtures were written by the export tool itself (`make fixtures`) from tiny random parts of the real
architecture; the reference is diffusers' own `AceStepPipeline` on the same parts with the same noise.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import FIXTURES
from test_nvim_schema import setup_error, setup_ok

from lofi_engine import LofiError
from lofi_engine.ace_step.pipeline import AceStep, sigmas
from lofi_engine.shared.request import GenerateRequest
from lofi_engine.store.ace_step_manifest import MANIFEST, Manifest

ACE_TINY = FIXTURES / "ace-step-tiny"
ACE_REFERENCE = np.load(FIXTURES / "ace-step-tiny-reference" / "reference.npz")
ACE_PROMPT = str(ACE_REFERENCE["prompt"])


@pytest.fixture(scope="module")
def ace() -> AceStep:
    return AceStep.load(ACE_TINY, device="cpu")


@pytest.fixture
def ace_copy(tmp_path: Path) -> Path:
    """A private copy of the export a test may damage."""
    return Path(shutil.copytree(ACE_TINY, tmp_path / "ace-step", ignore=shutil.ignore_patterns(".lofi-verified.json")))


@pytest.mark.parametrize("name", ["even", "odd"])
def test_onnx_pipeline_matches_diffusers(ace: AceStep, name: str) -> None:
    """Same parts, same noise: latents within 1e-3 of diffusers' (odd lengths take the host's patch padding)."""
    duration = float(ACE_REFERENCE[f"{name}_duration"])
    result = ace.generate(ACE_PROMPT, duration, seed=1, noise=ACE_REFERENCE[f"{name}_noise"])
    expected = ACE_REFERENCE[f"{name}_latents"]
    assert result.latents.shape == expected.shape
    assert np.abs(result.latents - expected).max() < 1e-3


def test_tempo_key_and_time_signature_condition_it_as_diffusers_does(ace: AceStep) -> None:
    """Issue 21 item 4: bpm, key and time signature in the prompt's metadata lines, as the upstream pipeline writes
    them: latents within 1e-3 of diffusers' with the same controls and noise, and unlike those without them."""
    duration, noise = float(ACE_REFERENCE["music_duration"]), ACE_REFERENCE["music_noise"]
    music = {"bpm": int(ACE_REFERENCE["music_bpm"]), "key": str(ACE_REFERENCE["music_keyscale"]), "time_signature": int(str(ACE_REFERENCE["music_timesignature"]))}
    result = ace.generate(ACE_PROMPT, duration, seed=1, noise=noise, **music)
    assert np.abs(result.latents - ACE_REFERENCE["music_latents"]).max() < 1e-3
    plain = ace.generate(ACE_PROMPT, duration, seed=1, noise=noise)
    assert np.abs(plain.latents - ACE_REFERENCE["music_latents"]).max() > 1e-2


def test_audio_matches_diffusers_across_decode_chunks(ace: AceStep) -> None:
    """10.5 s decodes in two overlapping chunks; the joined audio equals diffusers' single decode within 1e-3."""
    result = ace.generate(ACE_PROMPT, 10.5, seed=1, noise=ACE_REFERENCE["odd_noise"])
    assert len(ace.plan(10.5).chunks) == 2
    assert result.audio.shape == (int(ACE_REFERENCE["odd_audio_samples"]), 2) == (263 * 1920, 2)
    stride = int(ACE_REFERENCE["audio_stride"])
    assert np.abs(result.audio.T[:, ::stride] - ACE_REFERENCE["odd_audio"]).max() < 1e-3
    assert abs(np.abs(result.audio).max() - 10 ** (-1 / 20)) < 1e-6  # −1 dBFS peak


def test_turbo_schedule_is_the_shifted_linear_ramp() -> None:
    np.testing.assert_allclose(sigmas(8, 3.0), [1, 0.95454544, 0.9, 0.8333333, 0.75, 0.64285713, 0.5, 0.3, 0], atol=1e-6)


@pytest.mark.parametrize(
    ("duration", "frames", "tokens", "chunks"),
    [(10, 250, 125, 1), (10.5, 263, 132, 2), (20, 500, 250, 2), (240, 6000, 3000, 24)],
)
def test_durations_map_to_shapes(ace: AceStep, duration: float, frames: int, tokens: int, chunks: int) -> None:
    """25 latent frames a second, the DiT sees half as many tokens, 1920 stereo samples a frame at 48 kHz."""
    plan = ace.plan(duration)
    assert plan.latent_frames == frames and plan.dit_tokens == tokens and plan.dit_frames == 2 * tokens
    assert plan.samples == frames * 1920 and plan.steps == 8 and len(plan.chunks) == chunks
    kept = [(c.keep_start, c.keep_end) for c in plan.chunks]
    assert kept[0][0] == 0 and kept[-1][1] == frames and all(a[1] == b[0] for a, b in zip(kept, kept[1:]))
    assert all(0 <= c.start <= c.keep_start and c.keep_end <= c.end <= frames for c in plan.chunks)
    assert plan.units == ["diffusion"] * 8 + ["decode"] * chunks


def test_seeds_reproduce_and_differ(ace: AceStep) -> None:
    first = ace.generate("slow ambient piano", 10, seed=7)
    again = ace.generate("slow ambient piano", 10, seed=7)
    other = ace.generate("slow ambient piano", 10, seed=8)
    assert np.array_equal(first.audio, again.audio) and first.seed == 7
    assert not np.allclose(first.audio, other.audio)
    assert first.audio.shape == (480000, 2) and first.sample_rate == 48000


def test_the_prompt_conditions_the_music(ace: AceStep) -> None:
    base = ace.generate("slow ambient piano", 10, seed=7).latents
    assert not np.allclose(base, ace.generate("fast drum and bass", 10, seed=7).latents)


def test_every_step_and_decode_chunk_reports_progress(ace: AceStep) -> None:
    seen = []
    ace.generate("slow ambient piano", 20, seed=1, on_step=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 10) for i in range(1, 11)]
    model = ace.progress_model(GenerateRequest.parse({"prompt": "x", "duration_sec": 20}, "ace-step"))
    assert model.total == 10 and [model.stage(i) for i in range(1, 11)] == ["diffusion"] * 8 + ["decode"] * 2


def test_bad_durations_name_the_backend_range(ace: AceStep) -> None:
    for bad in (5, 9.99, 240.5, float("nan"), "30"):
        with pytest.raises(LofiError) as err:
            ace.generate("x", bad, seed=1)
        assert err.value.code == "INVALID_DURATION" and "10 to 240" in err.value.message and "ace-step" in err.value.message


@pytest.mark.parametrize(("at", "where"), [(3, "at diffusion step 4 of 8"), (9, "while decoding chunk 2 of 2")])
def test_cancel_stops_between_steps(ace: AceStep, at: int, where: str) -> None:
    def step(done: int, total: int) -> None:
        if done == at:
            ace.cancel()

    with pytest.raises(LofiError) as err:
        ace.generate("slow ambient piano", 20, seed=1, on_step=step)
    assert err.value.code == "CANCELLED" and err.value.message == f"cancelled {where}"
    assert ace.generate("slow ambient piano", 10, seed=1).audio.shape == (480000, 2)  # the next job runs normally


class _HeldSession:
    """The real DiT session, whose second run says it has begun and waits until another thread has cancelled: the
    cancel then lands while that ONNX run is in flight, with no timing involved."""

    def __init__(self, session) -> None:
        self.session, self.runs, self.outcomes = session, 0, []
        self.second_began, self.cancelled = threading.Event(), threading.Event()

    def run(self, *args, **kwargs):
        self.runs += 1
        if self.runs == 2:
            self.second_began.set()
            assert self.cancelled.wait(30)
        try:
            result = self.session.run(*args, **kwargs)
        except Exception:
            self.outcomes.append("terminated")
            raise
        self.outcomes.append("finished")
        return result


def test_cancel_from_another_thread_terminates_the_run_in_flight(ace: AceStep) -> None:
    """A cancel from another thread during diffusion step 2 ends that ONNX run itself (RunOptions.terminate)."""
    real = ace.sessions["dit"]
    held = ace.sessions["dit"] = _HeldSession(real)

    def cancel_during_step_2() -> None:
        held.second_began.wait(30)
        ace.cancel()
        held.cancelled.set()

    def step(done: int, total: int) -> None:
        if done == 1:
            threading.Thread(target=cancel_during_step_2).start()

    try:
        with pytest.raises(LofiError) as err:
            ace.generate("slow ambient piano", 240, seed=1, on_step=step)
    finally:
        ace.sessions["dit"] = real
    assert err.value.code == "CANCELLED" and err.value.message == "cancelled at diffusion step 2 of 8"
    assert held.outcomes == ["finished", "terminated"]


def test_int8_variant_runs_and_names_itself(ace: AceStep) -> None:
    int8 = AceStep.load(ACE_TINY, variant="int8", device="cpu")
    assert int8.model_version == "ace-step-1.5-turbo-int8-tiny-random" and ace.model_version == "ace-step-1.5-turbo-fp32-tiny-random"
    fp32, quantized = ace.generate("x", 10, seed=3).audio, int8.generate("x", 10, seed=3).audio
    assert quantized.shape == fp32.shape and np.isfinite(quantized).all() and not np.array_equal(fp32, quantized)


# ---- the manifest --------------------------------------------------------------------------------------------------


def _load_error(model_dir: Path, **kwargs) -> LofiError:
    with pytest.raises(LofiError) as err:
        AceStep.load(model_dir, device="cpu", **kwargs)
    return err.value


def test_missing_export_says_how_to_make_one(tmp_path: Path) -> None:
    error = _load_error(tmp_path / "nothing")
    assert error.code == "MODEL_NOT_FOUND" and "python -m lofi_engine.dev.export_ace_step" in error.message


def test_changed_file_fails_its_sha256(ace_copy: Path) -> None:
    dit = ace_copy / "dit.onnx"
    data = bytearray(dit.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dit.write_bytes(bytes(data))
    error = _load_error(ace_copy)
    assert error.code == "MODEL_LOAD_FAILED" and "dit.onnx" in error.message and "sha256" in error.message


def test_truncated_and_missing_files_are_named(ace_copy: Path) -> None:
    vae = ace_copy / "vae_decoder.onnx"
    vae.write_bytes(vae.read_bytes()[:1000])
    error = _load_error(ace_copy)
    assert error.code == "MODEL_LOAD_FAILED" and "vae_decoder.onnx has 1000 bytes" in error.message
    vae.unlink()
    error = _load_error(ace_copy)
    assert error.code == "MODEL_LOAD_FAILED" and "vae_decoder.onnx is missing" in error.message


def test_a_file_verified_once_is_checked_again_when_it_changes(ace_copy: Path) -> None:
    AceStep.load(ace_copy, device="cpu")
    assert (ace_copy / ".lofi-verified.json").is_file()
    tokenizer = ace_copy / "tokenizer.json"
    text = tokenizer.read_text()
    tokenizer.write_text(text.replace('"<|endoftext|>"', '"<|endoftexx|>"', 1))
    error = _load_error(ace_copy)
    assert error.code == "MODEL_LOAD_FAILED" and "tokenizer.json" in error.message


def test_foreign_or_incomplete_manifest_is_refused(ace_copy: Path) -> None:
    manifest = ace_copy / MANIFEST
    data = json.loads(manifest.read_text())
    manifest.write_text("{ not json")
    assert _load_error(ace_copy).code == "MODEL_LOAD_FAILED"
    manifest.write_text(json.dumps({**data, "format": "something-else/9"}))
    assert "is not a readable lofi-ace-step-onnx/1 manifest" in _load_error(ace_copy).message
    del data["graphs"]["dit"]
    manifest.write_text(json.dumps(data))
    error = _load_error(ace_copy)
    assert error.code == "MODEL_LOAD_FAILED" and "'dit'" in error.message


def test_variant_not_in_the_export_is_refused(ace_copy: Path) -> None:
    manifest = ace_copy / MANIFEST
    data = json.loads(manifest.read_text())
    del data["variants"]["int8"]
    manifest.write_text(json.dumps(data))
    error = _load_error(ace_copy, variant="int8")
    assert error.code == "MODEL_LOAD_FAILED" and "has no int8 variant" in error.message
    from lofi_engine.service.client import EngineClient
    from lofi_engine.shared.settings import Settings

    settings = {"ace_step_model_dir": str(ace_copy), "ace_step_variant": "int8", "cache_dir": str(ace_copy.parent / "cache")}
    client = EngineClient(Settings.from_dict(settings), lambda *event: None, log_path=ace_copy.parent / "engine.log")
    try:
        with pytest.raises(LofiError) as err:  # said at once, not after the job waited its turn
            client.request("generate", {"prompt": "x", "duration_sec": 10, "backend": "ace-step"})
        assert err.value.code == "MODEL_LOAD_FAILED" and "has no int8 variant" in err.value.message
    finally:
        client.close()


def test_manifest_describes_the_export() -> None:
    manifest = Manifest.read(ACE_TINY)
    assert manifest["sample_rate"] == 48000 and manifest["hop_length"] == 1920 and manifest["latent_rate"] == manifest.latent_rate == 25
    assert manifest["steps"] == 8 and manifest["shift"] == 3.0 and manifest["source"]["revision"] == "tiny-random"
    assert set(manifest["graphs"]["dit"]["inputs"]) == {"hidden_states", "timestep", "timestep_r", "encoder_hidden_states", "context_latents"}
    for name, entry in manifest["files"].items():
        assert (ACE_TINY / name).stat().st_size == entry["size"] and len(entry["sha256"]) == 64


# ---- the CLI -------------------------------------------------------------------------------------------------------


def test_cli_writes_a_48k_stereo_wav(tmp_path: Path) -> None:
    """The issue's "done means": `lofi generate … --backend ace-step --model-dir … --duration 20`."""
    from test_cli import lofi

    out = tmp_path / "ambient.wav"
    done = lofi("generate", "slow ambient piano", "--backend", "ace-step", "--model-dir", str(ACE_TINY), "--duration", "20", "--seed", "5", "-o", str(out))
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    info = soundfile.info(out)
    assert (info.samplerate, info.channels, info.frames) == (48000, 2, 20 * 48000)
    assert meta["backend"] == "ace-step" and meta["sample_rate"] == 48000 and meta["channels"] == 2 and meta["duration_sec"] == 20.0
    assert not list(tmp_path.glob(".*.part"))


def test_cli_refuses_musicgen_only_flags_and_short_pieces(tmp_path: Path) -> None:
    from test_cli import lofi

    done = lofi("generate", "x", "--backend", "ace-step", "--model-dir", str(ACE_TINY), "--duration", "20", "--top-k", "5", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.strip().endswith("top_k apply to musicgen only; ACE-Step turbo samples by diffusion")
    done = lofi("generate", "x", "--backend", "ace-step", "--model-dir", str(ACE_TINY), "--duration", "5", cwd=tmp_path)
    assert done.returncode == 1 and "INVALID_DURATION" in done.stderr and "10 to 240" in done.stderr
    assert not list(tmp_path.iterdir())
    done = lofi("download", "--backend", "ace-step", "--yes", "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert done.returncode == 1 and "MODEL_NOT_FOUND: lofi download fetches MusicGen only" in done.stderr and "lofi_engine.dev.export_ace_step" in done.stderr


# ---- the service: queue, progress, cancellation ---------------------------------------------------------------------


def _ace_engine(engine):
    return engine(ace_step_model_dir=str(ACE_TINY))


def test_service_runs_ace_step_jobs_with_progress_per_step_and_chunk(engine) -> None:
    """FR-010/FR-011 for the second backend: one queue, shared events, progress over the whole job."""
    client, events = _ace_engine(engine)
    reply = client.request("generate", {"prompt": "slow ambient piano", "duration_sec": 20, "seed": 3, "backend": "ace-step"})
    done = events.wait_event("generation_complete", track_id=reply["track_id"])
    stream = events.of(reply["track_id"])
    assert stream[0] == ("generation_start", {"track_id": reply["track_id"], "prompt": "slow ambient piano", "duration_sec": 20.0, "seed": 3, "backend": "ace-step"})
    progress = [p for m, p in stream if m == "generation_progress"]
    assert [p["percent"] for p in progress] == list(range(5, 100, 5)) + [99]
    assert all(p["tokens_estimated"] == 8 + 2 for p in progress) and progress[-1]["tokens_generated"] == 10
    stages = [p["stage"] for p in progress]
    assert stages == sorted(stages, key=["diffusion", "decode"].index) and stages[0] == "diffusion" and stages[-1] == "decode"
    assert done["backend"] == "ace-step" and done["sample_rate"] == 48000 and done["channels"] == 2
    assert done["model_version"] == "ace-step-1.5-turbo-fp32-tiny-random"
    info = soundfile.info(done["path"])
    assert (info.samplerate, info.channels, info.frames) == (48000, 2, 20 * 48000)


def test_track_id_includes_the_backend_and_each_backend_has_its_range(engine) -> None:
    client, events = _ace_engine(engine)
    params = {"prompt": "slow ambient piano", "duration_sec": 20, "seed": 3}
    musicgen = client.request("generate", params)
    ace = client.request("generate", {**params, "backend": "ace-step"})
    assert musicgen["track_id"] != ace["track_id"]
    assert client.request("queue")["pending"][-1]["backend"] == "ace-step"
    with pytest.raises(LofiError) as err:
        client.request("generate", {**params, "duration_sec": 200})
    assert err.value.code == "INVALID_DURATION" and "5 to 120 seconds with musicgen" in err.value.message
    with pytest.raises(LofiError) as err:
        client.request("generate", {**params, "duration_sec": 8, "backend": "ace-step"})
    assert err.value.code == "INVALID_DURATION" and "10 to 240 seconds with ace-step" in err.value.message
    with pytest.raises(LofiError) as err:
        client.request("generate", {**params, "backend": "jukebox"})
    assert err.value.code == "INVALID_PARAMS" and "musicgen, ace-step" in err.value.message
    events.wait_event("generation_complete", track_id=ace["track_id"])


def test_ace_step_without_an_export_fails_at_once_with_how_to(engine, tmp_path: Path) -> None:
    client, _ = engine(ace_step_model_dir=str(tmp_path / "no-export"))
    with pytest.raises(LofiError) as err:
        client.request("generate", {"prompt": "x", "duration_sec": 20, "backend": "ace-step"})
    assert err.value.code == "MODEL_NOT_FOUND" and "lofi_engine.dev.export_ace_step" in err.value.message
    assert client.request("queue") == {"running": None, "pending": [], "awaiting_consent": False}


def _no_track_left(client, track_id: str) -> bool:
    tracks = client.cache.root
    return not any(track_id in p.name for p in tracks.rglob("*")) and all(t["track_id"] != track_id for t in client.request("tracks"))


def test_cancel_a_queued_ace_step_job_before_it_starts(engine) -> None:
    client, events = _ace_engine(engine)
    first = client.request("generate", {"prompt": "slow ambient piano", "duration_sec": 240, "seed": 1, "backend": "ace-step"})
    queued = client.request("generate", {"prompt": "slow ambient piano", "duration_sec": 30, "seed": 2, "backend": "ace-step"})
    assert client.request("cancel", {"track_id": queued["track_id"]}) == {"track_id": queued["track_id"], "status": "cancelled"}
    assert events.wait_event("generation_error", track_id=queued["track_id"])["code"] == "CANCELLED"
    client.request("cancel", {"track_id": first["track_id"]})
    events.wait_event("generation_error", track_id=first["track_id"])
    assert not [m for m, _ in events.of(queued["track_id"]) if m != "generation_error"]  # it never started
    assert _no_track_left(client, queued["track_id"])


@pytest.mark.parametrize("stage", ["diffusion", "decode"])
def test_cancel_a_running_ace_step_job_mid_run(engine, stage: str) -> None:
    """Stopped where it is (a DiT step or a decode chunk): generation_error CANCELLED, no file, the queue goes on."""
    client, events = _ace_engine(engine)
    running = client.request("generate", {"prompt": "slow ambient piano", "duration_sec": 240, "seed": 1, "backend": "ace-step"})
    after = client.request("generate", {"prompt": "slow ambient piano", "duration_sec": 10, "seed": 9, "backend": "ace-step"})
    events.wait_event("generation_progress", track_id=running["track_id"], stage=stage)
    assert client.request("cancel", {"track_id": running["track_id"]}) == {"track_id": running["track_id"], "status": "cancelling"}
    error = events.wait_event("generation_error", track_id=running["track_id"])
    assert error["code"] == "CANCELLED" and ("decoding" if stage == "decode" else "diffusion step") in error["message"]
    assert not [m for m, _ in events.of(running["track_id"]) if m == "generation_complete"]
    assert _no_track_left(client, running["track_id"])
    assert soundfile.info(events.wait_event("generation_complete", track_id=after["track_id"])["path"]).channels == 2


def test_backends_take_turns_in_one_engine(engine) -> None:
    """The engine lets one backend's model go when the other is asked for, and both keep working."""
    client, events = _ace_engine(engine)
    ids = [
        client.request("generate", {"prompt": "lofi", "duration_sec": 5, "seed": 1})["track_id"],
        client.request("generate", {"prompt": "lofi", "duration_sec": 10, "seed": 1, "backend": "ace-step"})["track_id"],
        client.request("generate", {"prompt": "lofi", "duration_sec": 5, "seed": 2})["track_id"],
    ]
    rates = [events.wait_event("generation_complete", track_id=t)["sample_rate"] for t in ids]
    assert rates == [32000, 48000, 32000]


def test_the_engine_releases_the_other_backends_sessions(tmp_path: Path) -> None:
    """One backend's model at a time: switching lets the other's sessions go (nothing holds them any more)."""
    import gc
    import multiprocessing
    import weakref

    from conftest import TINY

    from lofi_engine.engine.worker import Worker
    from lofi_engine.shared.protocol import GenerateJob
    from lofi_engine.shared.settings import Settings

    config = Settings.from_dict({"model_dir": str(TINY), "ace_step_model_dir": str(ACE_TINY), "cache_dir": str(tmp_path)}).engine
    ours, theirs = multiprocessing.Pipe()
    worker = Worker(theirs, config, multiprocessing.Event())

    def run(backend: str, duration: float) -> None:
        request = GenerateRequest.parse({"prompt": "lofi", "duration_sec": duration, "seed": 1, "backend": backend})
        version = "musicgen-tiny" if backend == "musicgen" else Manifest.read(ACE_TINY).model_version("fp32")
        worker.generate(GenerateJob(request, request.track_id(version), version))
        while ours.poll():
            name, fields = ours.recv()
            assert name != "generation_error", fields

    run("musicgen", 5)
    musicgen = weakref.ref(worker.models["musicgen"])
    decoder_session = weakref.ref(worker.models["musicgen"].decoder.first)
    run("ace-step", 10)
    gc.collect()
    assert list(worker.models) == ["ace-step"]
    assert musicgen() is None and decoder_session() is None
    ace = weakref.ref(worker.models["ace-step"])
    dit = weakref.ref(worker.models["ace-step"].sessions["dit"])
    run("musicgen", 5)
    gc.collect()
    assert list(worker.models) == ["musicgen"] and ace() is None and dit() is None


# ---- JSON-RPC (`lofi serve`) and Neovim -----------------------------------------------------------------------------


def test_backend_selection_and_cancel_over_json_rpc(tmp_path: Path) -> None:
    from test_rpc import Server

    server = Server(tmp_path / "cache", "--ace-step-model-dir", str(ACE_TINY))
    try:
        short = server.call("generate", {"prompt": "x", "duration_sec": 8, "backend": "ace-step"}, id=1)["error"]
        assert short["code"] == -32602 and short["data"]["code"] == "INVALID_DURATION" and "10 to 240" in short["message"]
        reply = server.call("generate", {"prompt": "slow ambient piano", "duration_sec": 12, "seed": 4, "backend": "ace-step"}, id=2)
        done = server.read_until(lambda m: m.get("method") == "generation_complete")["params"]
        assert done["track_id"] == reply["result"]["track_id"] and done["backend"] == "ace-step" and done["sample_rate"] == 48000
        assert soundfile.info(done["path"]).channels == 2
        long = server.call("generate", {"prompt": "slow ambient piano", "duration_sec": 240, "seed": 4, "backend": "ace-step"}, id=3)
        tid = long["result"]["track_id"]
        server.read_until(lambda m: m.get("method") == "generation_progress" and m["params"]["track_id"] == tid)
        assert server.call("cancel", {"track_id": tid}, id=4)["result"] == {"track_id": tid, "status": "cancelling"}
        error = server.read_until(lambda m: m.get("method") == "generation_error")["params"]
        assert error["track_id"] == tid and error["code"] == "CANCELLED"
    finally:
        server.close()


def test_neovim_generates_with_ace_step_through_the_lua_api(nvim, tmp_path: Path) -> None:
    """`require("lofi").generate{backend = "ace-step", …}` in a real editor: a 48 kHz stereo track comes back."""
    from test_nvim import WAIT_GENERATION

    nvim.exec_lua(
        "require('lofi').setup(...)",
        {"ace_step": {"dir": str(ACE_TINY)}, "cache": {"dir": str(tmp_path / "cache")}, "autoplay": False},
    )
    out = nvim.exec_lua(WAIT_GENERATION, {"prompt": "slow ambient piano", "duration_sec": 20, "seed": 6, "backend": "ace-step"})
    assert out.get("err") is None and out["done"].get("err") is None, out
    track = out["done"]["track"]
    assert track["backend"] == "ace-step" and track["sample_rate"] == 48000
    info = soundfile.info(track["path"])
    assert (info.samplerate, info.channels, info.frames) == (48000, 2, 20 * 48000)
    stages = {data.get("stage") for name, data in out["events"] if name == "generation_progress"}
    assert stages == {"diffusion", "decode"}
    notes = [n["msg"] for n in nvim.exec_lua("return _G.notes")]
    progress = nvim.exec_lua("return require('lofi.ui.messages').progress_log")  # progress is a line, not a notification
    assert any(n.startswith("lofi: generating ") for n in notes) and any(p.startswith("lofi: decoding ") for p in progress)


def test_neovim_setup_checks_the_duration_against_the_backend(nvim) -> None:
    assert "10 to 240" in setup_error(nvim, {"backend": "ace-step", "duration_sec": 5})
    assert setup_ok(nvim, {"backend": "ace-step", "duration_sec": 200})
    assert "backend" in setup_error(nvim, {"backend": "jukebox"})


def test_lofi_cancel_stops_a_running_ace_step_job_from_the_editor(nvim, tmp_path: Path) -> None:
    nvim.exec_lua("require('lofi').setup(...)", {"ace_step": {"dir": str(ACE_TINY)}, "cache": {"dir": str(tmp_path / "cache")}, "autoplay": False, "backend": "ace-step"})
    out = nvim.exec_lua(
        """
        local lofi, done, started = require('lofi'), nil, false
        lofi.on('generation_progress', function() started = true end)
        local result = lofi.generate({prompt = 'slow ambient piano', duration_sec = 240, seed = 1}, function(err) done = err end)
        vim.wait(60000, function() return started end, 5)
        vim.cmd('LofiCancel')
        vim.wait(60000, function() return done ~= nil end, 5)
        return {result = result, done = done, notes = _G.notes}
        """
    )
    assert out["done"]["code"] == "CANCELLED"
    assert any("cancelled " + out["result"]["track_id"] in note["msg"] for note in out["notes"])


def test_checkhealth_reports_the_ace_step_export(nvim, tmp_path: Path) -> None:
    nvim.command("checkhealth lofi")
    text = "\n".join(nvim.current.buffer[:])
    assert "no ACE-Step export in" in text and "ERROR" not in text  # only informs while musicgen is the backend
    nvim.exec_lua("require('lofi').setup(...)", {"backend": "ace-step", "ace_step": {"dir": str(tmp_path / "none")}, "cache": {"dir": str(tmp_path / "c")}})
    nvim.command("bwipeout! | checkhealth lofi")
    text = "\n".join(nvim.current.buffer[:])
    assert "ERROR no ACE-Step export in" in text.replace("- ", "").replace("❌ ", "")
    nvim.exec_lua("require('lofi').setup(...)", {"backend": "ace-step", "ace_step": {"dir": str(ACE_TINY)}, "cache": {"dir": str(tmp_path / "c")}})
    nvim.command("bwipeout! | checkhealth lofi")
    text = "\n".join(nvim.current.buffer[:])
    assert f"ACE-Step export found in {ACE_TINY}" in text and "ERROR" not in text


def test_first_load_reports_the_file_check_then_loads_without_it(engine, ace_copy: Path) -> None:
    client, events = engine(ace_step_model_dir=str(ace_copy))
    first = client.request("generate", {"prompt": "x", "duration_sec": 10, "seed": 1, "backend": "ace-step"})
    events.wait_event("generation_complete", track_id=first["track_id"])
    checks = [p for m, p in events.of(first["track_id"]) if m == "model_load_progress" and p.get("stage") == "verify"]
    assert checks and checks[-1]["percent"] == 100 and checks[-1]["bytes_loaded"] == checks[-1]["bytes_total"]
    assert checks[-1]["bytes_total"] == sum(e["size"] for n, e in json.loads((ace_copy / MANIFEST).read_text())["files"].items() if "int8" not in n)
    client.close()
    again, events = engine(ace_step_model_dir=str(ace_copy))
    second = again.request("generate", {"prompt": "x", "duration_sec": 10, "seed": 2, "backend": "ace-step"})
    events.wait_event("generation_complete", track_id=second["track_id"])
    assert not [p for m, p in events.of(second["track_id"]) if m == "model_load_progress" and p.get("stage") == "verify"]


def test_export_tool_explains_what_it_needs_without_a_traceback(tmp_path: Path) -> None:
    """Run from the engine's own environment (no torch) it says how to get one; with torch, it checks its input."""
    import importlib.util
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "lofi_engine.dev.export_ace_step", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
    )
    assert "Traceback" not in done.stderr and not (tmp_path / "out" / MANIFEST).exists()
    if importlib.util.find_spec("torch") is None:
        assert done.returncode == 1 and "run `make ace-dev`" in done.stderr
    else:
        assert done.returncode == 2 and "is not a diffusers checkpoint (no model_index.json)" in done.stderr


def test_an_export_redone_while_the_engine_runs_is_loaded_for_the_next_job(engine, ace_copy: Path) -> None:
    client, events = engine(ace_step_model_dir=str(ace_copy))
    first = client.request("generate", {"prompt": "x", "duration_sec": 10, "seed": 1, "backend": "ace-step"})
    assert events.wait_event("generation_complete", track_id=first["track_id"])["model_version"].endswith("-tiny-random")
    manifest = json.loads((ace_copy / MANIFEST).read_text())
    manifest["source"]["revision"] = "re-exported"
    (ace_copy / MANIFEST).write_text(json.dumps(manifest))
    second = client.request("generate", {"prompt": "x", "duration_sec": 10, "seed": 1, "backend": "ace-step"})
    assert second["track_id"] != first["track_id"]
    done = events.wait_event("generation_complete", track_id=second["track_id"])
    assert done["model_version"] == "ace-step-1.5-turbo-fp32-re-exported"


def test_a_file_the_manifest_does_not_list_is_refused_by_name(ace_copy: Path) -> None:
    manifest = ace_copy / MANIFEST
    data = json.loads(manifest.read_text())
    del data["files"]["silence_latent.npy"]
    manifest.write_text(json.dumps(data))
    error = _load_error(ace_copy)
    assert error.code == "MODEL_LOAD_FAILED" and "silence_latent.npy is not listed in" in error.message
