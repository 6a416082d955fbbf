"""The engine service (issue 3): queue, progress, cache, crash recovery; real engine process on the tiny model."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import soundfile
from conftest import PROMPT, TINY

from lofi_engine import LofiError

COMPLETE_FIELDS = {"track_id", "path", "duration_sec", "sample_rate", "prompt", "seed", "generation_time_sec", "model_version"}


def test_generate_answers_at_once_then_streams_start_progress_complete(engine) -> None:
    """FR-002, FR-006, FR-010, FR-011, FR-012, SC-003."""
    client, events = engine()
    assert client.request("status")["engine"] == "stopped"  # lazy: nothing starts before the first request
    reply = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 42, "priority": "normal"})
    assert reply == {"track_id": reply["track_id"], "status": "queued", "position": 0, "seed": 42}
    done = events.wait_event("generation_complete", track_id=reply["track_id"])
    stream = events.of(reply["track_id"])
    assert stream[0][0] == "generation_start"
    assert [m for m, _ in stream if m == "model_load_progress"] and stream[-1][0] == "generation_complete"
    progress = [p for m, p in stream if m == "generation_progress"]
    assert [p["percent"] for p in progress] == list(range(5, 100, 5)) + [99]
    assert all(p["tokens_estimated"] == 253 for p in progress)
    assert [p["tokens_generated"] for p in progress] == sorted(p["tokens_generated"] for p in progress)
    assert progress[-1]["tokens_generated"] == 253
    for p in progress:  # SC-003: percent within 10 % of the true fraction of work done
        assert abs(p["percent"] - 100 * p["tokens_generated"] / p["tokens_estimated"]) <= 10
        assert p["eta_sec"] >= 0
    assert set(done) >= COMPLETE_FIELDS
    assert done["seed"] == 42 and done["sample_rate"] == 32000 and done["duration_sec"] == 5.0
    assert done["model_version"] == client.model_version
    assert soundfile.info(done["path"]).frames == 5 * 32000
    assert Path(done["path"]).with_suffix(".json").is_file()


def test_progress_counts_every_window_of_a_long_track(engine) -> None:
    client, events = engine()
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 45, "seed": 1})["track_id"]
    events.wait_event("generation_complete", track_id=tid)
    progress = [p for m, p in events.of(tid) if m == "generation_progress"]
    assert len(progress) == 20 and progress[-1]["tokens_generated"] == progress[-1]["tokens_estimated"] == 1503 + 753


def test_model_is_loaded_once_and_kept(engine) -> None:
    """FR-006, FR-007."""
    client, events = engine()
    first = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    second = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 2})["track_id"]
    events.wait_event("generation_complete", track_id=second)
    assert [m for m, _ in events.of(first)].count("model_load_progress") == 3
    assert "model_load_progress" not in [m for m, _ in events.of(second)]


def test_random_seed_is_drawn_and_returned(engine) -> None:
    """FR-014."""
    client, events = engine()
    reply = client.request("generate", {"prompt": PROMPT, "duration_sec": 5})
    assert isinstance(reply["seed"], int)
    assert events.wait_event("generation_complete", track_id=reply["track_id"])["seed"] == reply["seed"]


def test_queue_runs_one_at_a_time_high_priority_first(engine) -> None:
    """FR-003, FR-005: high priority goes ahead of pending normal jobs, never ahead of the running one."""
    client, events = engine()
    a = client.request("generate", {"prompt": "a", "duration_sec": 30, "seed": 1})
    b = client.request("generate", {"prompt": "b", "duration_sec": 5, "seed": 1})
    c = client.request("generate", {"prompt": "c", "duration_sec": 5, "seed": 1})
    d = client.request("generate", {"prompt": "d", "duration_sec": 5, "seed": 1, "priority": "high"})
    e = client.request("generate", {"prompt": "e", "duration_sec": 5, "seed": 1, "priority": "high"})
    assert [r["position"] for r in (a, b, c)] == [0, 1, 2]
    assert d["position"] == 1 and e["position"] == 2
    listing = client.request("queue")
    assert listing["running"]["track_id"] == a["track_id"] and listing["running"]["position"] == 0
    assert [(j["track_id"], j["position"]) for j in listing["pending"]] == [
        (d["track_id"], 1), (e["track_id"], 2), (b["track_id"], 3), (c["track_id"], 4)
    ]
    events.wait_event("generation_complete", track_id=c["track_id"])
    starts = [p["track_id"] for p in events.names("generation_start")]
    assert starts == [a["track_id"], d["track_id"], e["track_id"], b["track_id"], c["track_id"]]
    # Serial: each job completes before the next one starts.
    order = [(m, p["track_id"]) for m, p in events.events if m in ("generation_start", "generation_complete")]
    assert order == [(m, t) for t in starts for m in ("generation_start", "generation_complete")]


def test_queue_full_at_the_eleventh_pending_and_nothing_lost(engine) -> None:
    """FR-004, FR-022, SC-007."""
    client, events = engine()
    accepted = [client.request("generate", {"prompt": f"p{i}", "duration_sec": 5, "seed": i}) for i in range(11)]
    assert client.request("queue")["running"] is not None and len(client.request("queue")["pending"]) == 10
    with pytest.raises(LofiError) as full:
        client.request("generate", {"prompt": "one too many", "duration_sec": 5})
    assert full.value.code == "QUEUE_FULL"
    for reply in accepted:
        events.wait_event("generation_complete", track_id=reply["track_id"])
    assert not events.names("generation_error")


def test_invalid_requests_are_refused_without_queuing(engine) -> None:
    """FR-023: INVALID_DURATION immediately, nothing queued, no engine started."""
    client, _ = engine()
    cases = [
        ({"prompt": PROMPT, "duration_sec": 4}, "INVALID_DURATION"),
        ({"prompt": PROMPT, "duration_sec": 121}, "INVALID_DURATION"),
        ({"prompt": "  ", "duration_sec": 5}, "INVALID_PROMPT"),
        ({"prompt": PROMPT, "priority": "urgent"}, "INVALID_PARAMS"),
        ({"prompt": PROMPT, "seed": "42"}, "INVALID_PARAMS"),
        ({"prompt": PROMPT, "colour": "blue"}, "INVALID_PARAMS"),
    ]
    for params, code in cases:
        with pytest.raises(LofiError) as err:
            client.request("generate", params)
        assert err.value.code == code
    assert client.request("queue") == {"running": None, "pending": [], "awaiting_consent": False}
    assert client.request("status")["engine"] == "stopped"


def test_same_request_is_served_from_the_cache(engine) -> None:
    """FR-013, FR-015: the same prompt + seed + duration + model gives the same track id, answered from the cache."""
    client, events = engine()
    first = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 7})
    done = events.wait_event("generation_complete", track_id=first["track_id"])
    again = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 7})
    assert again["status"] == "cached" and again["track_id"] == first["track_id"] and again["path"] == done["path"]
    events.wait_for(lambda ev: sum(m == "generation_complete" for m, _ in ev) == 2)
    assert [m for m, _ in events.of(first["track_id"])].count("generation_start") == 1
    assert client.request("tracks")[0]["track_id"] == first["track_id"]
    other = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 8})
    assert other["track_id"] != first["track_id"] and other["status"] == "queued"


def test_a_half_written_track_is_not_served_from_the_cache(engine, tmp_path: Path) -> None:
    client, events = engine()
    first = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 3})
    done = events.wait_event("generation_complete", track_id=first["track_id"])
    Path(done["path"]).with_suffix(".json").unlink()  # as if the engine died between the two writes
    again = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 3})
    assert again["status"] == "queued"
    events.wait_for(lambda ev: sum(m == "generation_start" for m, _ in ev) == 2)


def test_cache_evicts_least_recently_played(engine) -> None:
    client, events = engine(cache_max_bytes=2 * (5 * 32000 * 2 + 44) + 4000)  # room for two 5 s tracks
    ids = []
    for seed in (1, 2):
        ids.append(client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": seed})["track_id"])
        events.wait_event("generation_complete", track_id=ids[-1])
    client.request("track_played", {"track_id": ids[0]})  # the older one was just played: keep it
    ids.append(client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 3})["track_id"])
    events.wait_event("generation_complete", track_id=ids[-1])
    cached = {t["track_id"] for t in client.request("tracks")}
    assert cached == {ids[0], ids[2]}
    assert not client.cache.wav_path(ids[1]).exists()


def test_engine_killed_mid_track_fails_that_job_restarts_and_finishes_the_queue(engine) -> None:
    client, events = engine()
    running = client.request("generate", {"prompt": "long", "duration_sec": 120, "seed": 1})["track_id"]
    queued = [client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": s})["track_id"] for s in (1, 2)]
    events.wait_event("generation_progress", track_id=running)
    pid = client.engine_pid
    os.kill(pid, signal.SIGKILL)
    error = events.wait_event("generation_error", track_id=running, timeout=10)
    assert error["code"] == "MODEL_INFERENCE_FAILED" and "crashed" in error["message"]
    for tid in queued:
        events.wait_event("generation_complete", track_id=tid)
    assert client.engine_pid not in (None, pid)
    assert not client.cache.wav_path(running).exists() and client.cache.get(running) is None


def test_a_stopped_engine_is_noticed_restarted_and_only_its_job_fails(engine) -> None:
    """Issue 11 item 11: SIGSTOP froze the ETA forever; the watchdog restarts an engine that went silent."""
    client, events = engine(stall_timeout_sec=5)
    running = client.request("generate", {"prompt": "long", "duration_sec": 120, "seed": 1})["track_id"]
    queued = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    events.wait_event("generation_progress", track_id=running)
    pid = client.engine_pid
    os.kill(pid, signal.SIGSTOP)
    try:
        error = events.wait_event("generation_error", track_id=running, timeout=60)
        assert error["code"] == "MODEL_INFERENCE_FAILED" and "stopped responding (nothing for 5 s)" in error["message"]
        events.wait_event("generation_complete", track_id=queued, timeout=120)
        assert client.engine_pid not in (None, pid)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the stopped engine was killed, not left behind
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def test_engine_runs_under_the_given_interpreter(engine, tmp_path: Path) -> None:
    marker = tmp_path / "interpreter-used"
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" > {marker}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    client, events = engine(python=str(wrapper))
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    events.wait_event("generation_complete", track_id=tid)
    assert "multiprocessing" in marker.read_text()
    assert "engine started under" in (tmp_path / "engine.log").read_text()


def test_an_engine_that_cannot_start_fails_jobs_cleanly(engine, tmp_path: Path) -> None:
    client, events = engine(python=str(tmp_path / "no-such-python"))
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    error = events.wait_event("generation_error", track_id=tid, timeout=10)
    assert error["code"] == "MODEL_LOAD_FAILED" and "no-such-python" in error["message"]
    assert client.request("queue")["running"] is None


def test_closing_the_client_stops_the_engine(engine) -> None:
    client, events = engine()
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 30, "seed": 1})["track_id"]
    events.wait_event("generation_start", track_id=tid)
    pid = client.engine_pid
    client.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_playable_chunks_stream_before_the_track_completes(engine) -> None:
    """Issue 5, time to first sound: `generation_chunk` events with WAV files, in order, before completion."""
    client, events = engine()
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 10, "seed": 5})["track_id"]
    done = events.wait_event("generation_complete", track_id=tid)
    stream = events.of(tid)
    chunks = [p for m, p in stream if m == "generation_chunk"]
    names = [m for m, _ in stream]
    assert names.index("generation_chunk") < names.index("generation_progress") + 15  # the first comes early
    assert [c["start_sec"] for c in chunks] == [2.0 * i for i in range(5)]
    assert sum(c["duration_sec"] for c in chunks) == pytest.approx(10.0)
    for chunk in chunks:
        info = soundfile.info(chunk["path"])
        assert info.samplerate == 32000 and info.frames == round(chunk["duration_sec"] * 32000)
    assert names.index("generation_complete") > max(i for i, n in enumerate(names) if n == "generation_chunk")
    assert Path(done["path"]).exists()


def test_a_queued_job_is_dropped_and_a_running_musicgen_job_stops_between_steps(engine) -> None:
    """Issue 13 goes past FR-009: a started MusicGen job is cancellable too (radio stop needs it)."""
    client, events = engine()
    running = client.request("generate", {"prompt": "running", "duration_sec": 120, "seed": 1})["track_id"]
    queued = client.request("generate", {"prompt": "queued", "duration_sec": 5, "seed": 1})["track_id"]
    kept = client.request("generate", {"prompt": "kept", "duration_sec": 5, "seed": 1})["track_id"]
    assert client.request("cancel", {"track_id": queued}) == {"track_id": queued, "status": "cancelled"}
    assert events.wait_event("generation_error", track_id=queued)["code"] == "CANCELLED"
    events.wait_event("generation_progress", track_id=running)
    assert client.request("cancel", {"track_id": running}) == {"track_id": running, "status": "cancelling"}
    error = events.wait_event("generation_error", track_id=running)
    assert error["code"] == "CANCELLED" and "cancelled at decoder step" in error["message"]
    assert not [m for m, _ in events.of(running) if m == "generation_complete"] and client.cache.get(running) is None
    with pytest.raises(LofiError) as err:
        client.request("cancel", {"track_id": "nope"})
    assert err.value.code == "INVALID_PARAMS"
    events.wait_event("generation_complete", track_id=kept)
    assert "generation_start" not in [m for m, _ in events.of(queued)]
    assert client.cache.get(queued) is None and client.cache.get(running) is None


def test_new_settings_keep_the_queued_jobs_which_finish_with_theirs(engine, tmp_path: Path) -> None:
    """Issue 10: `setup()` with other settings while jobs wait no longer drops the queue."""
    from lofi_engine.shared.settings import Settings

    client, events = engine()
    old = [client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": seed})["track_id"] for seed in (1, 2, 3)]
    events.wait_event("generation_start", track_id=old[0])
    first_engine = client.engine_pid
    other_cache = tmp_path / "other-cache"
    new_config = Settings.from_dict({"model_dir": str(TINY), "cache_dir": str(other_cache)})
    assert client.reconfigure(new_config) == {"kept_jobs": 3}
    new = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 4})["track_id"]
    for tid in old:
        assert Path(events.wait_event("generation_complete", track_id=tid)["path"]).parent == tmp_path / "cache" / "tracks"
    assert Path(events.wait_event("generation_complete", track_id=new)["path"]).parent == other_cache / "tracks"
    assert not events.names("generation_error")
    assert client.engine_pid != first_engine  # the new settings got an engine of their own


def test_musicgen_stops_at_the_first_step_after_the_stop_request(tiny) -> None:
    """Within one decoder step: asked after each step, the first True ends the job there."""
    from lofi_engine.shared.request import GenerateRequest

    steps: list[int] = []
    request = GenerateRequest.parse({"prompt": PROMPT, "duration_sec": 10, "seed": 1})
    with pytest.raises(LofiError) as err:
        tiny.run(request, on_step=lambda done, total: steps.append(done), should_stop=lambda: len(steps) >= 37)
    assert err.value.code == "CANCELLED" and err.value.message.startswith("cancelled at decoder step 38 of ")
    assert steps[-1] == 37


def test_player_or_radio_settings_keep_the_engine_and_its_model(engine) -> None:
    """Issue 20 item 4: only an engine setting restarts the engine (and reloads the model)."""
    from lofi_engine.shared.settings import Settings

    client, events = engine()
    first = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    events.wait_event("generation_complete", track_id=first)
    pid = client.engine_pid
    changed = {**client.settings.to_dict(), "volume": 30, "crossfade_sec": 0.5, "playlist_loop": False, "radio_piece_sec": 20}
    assert client.reconfigure(Settings.from_dict(changed)) == {"kept_jobs": 0}
    second = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 2})["track_id"]
    events.wait_event("generation_complete", track_id=second)
    assert client.engine_pid == pid
    assert [e for e in events.names("model_load_progress") if e["track_id"] == second] == []
    client.reconfigure(Settings.from_dict({**changed, "threads": 1}))
    third = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 3})["track_id"]
    events.wait_event("generation_complete", track_id=third)
    assert client.engine_pid != pid  # an engine setting: a new engine
