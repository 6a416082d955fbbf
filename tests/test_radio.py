"""Issue 13, the radio's endless `continue` stream on the tiny model: seams, steering, bounded memory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import PROMPT
from lofi_engine import LofiError, MusicGen
from lofi_engine.musicgen.radio import REWINDABLE, ContinuousStream
from lofi_engine.musicgen.streaming import DECODE_CONTEXT, LOOKAHEAD
from lofi_engine.musicgen.windows import Window
from lofi_engine.shared.request import GenerateRequest


def stream(tiny: MusicGen, **request) -> ContinuousStream:
    return ContinuousStream(tiny, GenerateRequest.parse({"prompt": PROMPT, "seed": 3, **request}), window_sec=6.0, context_sec=2.0)


def test_the_stream_equals_a_one_call_decode_of_the_stitched_codes_across_a_steer(tiny: MusicGen) -> None:
    radio = stream(tiny)
    segments = [radio.next_window(), radio.next_window()]
    radio.steer("heavy metal, distorted guitars")
    segments += [radio.next_window(), radio.next_window()]
    codes = np.concatenate([s.codes for s in segments], axis=1)
    assert [s.codes_from for s in segments] == [0, 300, 500, 700] and codes.shape[1] == radio.frames == 900
    assert [s.prompt for s in segments][1:3] == [PROMPT, "heavy metal, distorted guitars"]
    audio = np.concatenate([s.audio for s in segments])
    hop = tiny.settings.hop_length
    whole = tiny.decode_audio(codes)[: len(audio)]
    assert len(audio) == (radio.frames - LOOKAHEAD) * hop
    assert np.abs(audio - whole).max() < 1e-3
    assert [s.first_frame for s in segments] == [0, 290, 490, 690]  # gapless: each starts where the last ended


def test_each_window_continues_the_last_context_of_codes(tiny: MusicGen) -> None:
    """A window is prompted with the previous codes: with greedy sampling, the same context gives the same next window."""
    a, b = stream(tiny, top_k=1), stream(tiny, top_k=1)
    first = a.next_window()
    assert np.array_equal(first.codes, b.next_window().codes)
    second = a.next_window()
    prompt = first.codes[:, -a.context_frames :]
    window = Window(prompt.shape[1], second.codes.shape[1], second.codes.shape[1] + tiny.settings.num_codebooks - 1)
    composition = tiny.compose([window], *a._condition, a._sampler, context=prompt)
    assert [step.done for step in composition] == list(range(1, window.steps + 1))
    assert np.array_equal(composition.codes[:, prompt.shape[1] :], second.codes)


def test_steering_changes_the_codes_that_follow(tiny: MusicGen) -> None:
    same, steered = stream(tiny, top_k=1), stream(tiny, top_k=1)
    assert np.array_equal(same.next_window().codes, steered.next_window().codes)
    steered.steer("heavy metal, distorted guitars")
    assert not np.array_equal(same.next_window().codes, steered.next_window().codes)


def test_memory_stays_bounded_however_long_it_runs(tiny: MusicGen) -> None:
    radio = stream(tiny)
    for _ in range(8):
        radio.next_window()
        assert radio._tail.shape[1] <= radio.context_frames + DECODE_CONTEXT + LOOKAHEAD + REWINDABLE * radio.window_frames
    assert radio.frames == 300 + 7 * 200


def test_a_rewound_stream_goes_on_from_the_window_it_went_back_to(tiny: MusicGen) -> None:
    """What a steer relies on: after rewind(k) the next window continues window k-1, as if the later ones never were."""
    once, twice = stream(tiny, top_k=1), stream(tiny, top_k=1)
    for _ in range(5):
        once.next_window()
    expected = [twice.next_window() for _ in range(3)][-1]
    once.rewind(2)
    again = once.next_window()
    assert again.first_frame == expected.first_frame and np.array_equal(again.codes, expected.codes)
    np.testing.assert_allclose(again.audio, expected.audio, atol=1e-5)
    with pytest.raises(LofiError):
        once.rewind(3 - REWINDABLE - 1)


def test_the_first_window_heard_while_composed_is_the_window_and_the_stream_goes_on_as_before(tiny: MusicGen) -> None:
    """Issue 19 item 2: the first window's audio comes 2 s at a time while it is composed; those chunks are the
    segment's audio, and the stream after it is the one an unstreamed first window gives."""
    streamed, whole = stream(tiny, top_k=1), stream(tiny, top_k=1)
    chunks: list[tuple[int, np.ndarray]] = []
    steps: list[int] = []
    expected_steps = streamed.steps_per_window()
    first = streamed.next_window(on_step=lambda done, total: steps.append(done), on_chunk=lambda audio, at: chunks.append((at, audio.copy())))
    hop = tiny.settings.hop_length
    assert [at for at, _ in chunks] == [0, 100 * hop, 200 * hop]  # 2 s chunks while composing, then the rest
    assert steps == list(range(1, expected_steps + 1))
    np.testing.assert_array_equal(np.concatenate([a for _, a in chunks]), first.audio)
    reference = whole.next_window()
    assert np.array_equal(first.codes, reference.codes) and len(first.audio) == len(reference.audio)
    np.testing.assert_allclose(first.audio, reference.audio, atol=1e-4)
    later, later_reference = streamed.next_window(on_chunk=lambda audio, at: chunks.append((at, audio))), whole.next_window()
    assert len(chunks) == 3, "a window with context is composed ahead of what plays: it comes whole"
    assert later.first_frame == later_reference.first_frame and np.array_equal(later.codes, later_reference.codes)
    np.testing.assert_allclose(later.audio, later_reference.audio, atol=1e-4)


def test_the_first_windows_eta_counts_what_is_left_of_it(tiny: MusicGen) -> None:
    radio = stream(tiny)
    eta = radio.progress_model(chunks=True)
    assert eta.total == radio.steps_per_window()
    for step in range(eta.total):  # the machine runs at the prices it learned
        eta.record(step, eta.predicted[step])
    left = [eta.eta(done) for done in range(1, eta.total + 1)]
    assert all(a > b for a, b in zip(left, left[1:]))
    assert left[-1] == pytest.approx(eta.decode) and eta.decode > 0.0  # the window's last decode is still to come


def test_a_stop_request_ends_the_window_at_the_next_step(tiny: MusicGen) -> None:
    radio, steps = stream(tiny), []
    with pytest.raises(LofiError) as err:
        radio.next_window(on_step=lambda done, total: steps.append(done), should_stop=lambda: len(steps) >= 5)
    assert err.value.code == "CANCELLED" and "step 6 of" in err.value.message and steps[-1] == 5


# ---- through the service, heard through a real player ------------------------------------------------------------------


@pytest.fixture
def radio(heard_service):
    from conftest import TINY

    return lambda model_dir=TINY, **settings: heard_service(
        model_dir=str(model_dir), radio_window_sec=settings.pop("radio_window_sec", 6), radio_context_sec=settings.pop("radio_context_sec", 2), **settings
    )


def _heard(out):
    import soundfile

    audio, rate = soundfile.read(out, dtype="float32", always_2d=True)
    assert rate == 48000
    return audio


def _longest_silence(audio) -> int:
    quiet = np.abs(audio).max(axis=1) < 1e-5
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0


def test_radio_continue_plays_one_gapless_stream_across_windows_and_a_steer(radio) -> None:
    import soundfile
    from lofi_engine.playback.audio import to_mixer_rate

    client, events, out = radio()
    started = client.request("radio_start", {"prompt": PROMPT, "seed": 5})
    assert started["active"] and started["strategy"] == "continue"
    # steered before anything is heard: the window in flight keeps its prompt, the next ones take the new one
    assert client.request("radio_steer", {"prompt": "heavy metal, distorted guitars"})["prompt"] == "heavy metal, distorted guitars"
    segments = []
    first_segment = events.wait_event("radio_segment", timeout=60)
    chunks = [d for n, d in events.events[: events.events.index(("radio_segment", first_segment))] if n == "radio_chunk"]
    assert [c["start_sec"] for c in chunks] == [0.0, 2.0, 4.0], "the first window came 2 s at a time while it was composed"
    for n in (1, 2, 3):
        segment = events.wait_event("radio_segment", nth=n, timeout=60)
        segments.append(soundfile.read(segment["path"], dtype="float32")[0])  # before stop deletes them
    assert events.wait_event("radio_segment", nth=3)["prompt"] == "heavy metal, distorted guitars"
    assert client.request("radio")["mode"] == "live"  # the tiny model composes far faster than it plays
    events.wait_event("playback_start", track_id=f"{started['stream_id']}-000002")  # the third segment is playing
    assert client.request("radio_stop") == {"active": False}
    events.wait_event("radio_state", active=False)
    events.wait_event("playback_end", reason="stopped", timeout=30)
    heard = _heard(out)
    stream = np.concatenate(segments)
    expected = to_mixer_rate(np.stack([stream, stream], axis=1), 32000)
    played = min(len(heard), len(expected)) - int(48000 * 0.3)  # up to the stop's fade-out (within the player's lead)
    assert played > 2 * 4 * 48000  # into the third segment
    assert np.abs(heard[:played] - expected[:played]).max() < 1e-3  # one stream: the joins are exact
    assert _longest_silence(heard[:played]) < 0.02 * 48000
    assert not (client.config.cache_dir / "radio").exists() or not any((client.config.cache_dir / "radio").iterdir())


def test_a_steer_is_heard_after_the_segment_playing_not_after_those_made_ahead(radio) -> None:
    """Issue 20 item 3: the segments composed ahead with the old prompt and not heard yet are dropped, and the stream
    goes on from the end of the segment playing with the new prompt, joined exactly."""
    import soundfile
    from lofi_engine.playback.audio import to_mixer_rate

    client, events, out = radio()
    sid = client.request("radio_start", {"prompt": PROMPT, "seed": 5})["stream_id"]
    first = events.wait_event("radio_segment")
    events.wait_event("playback_start", track_id=f"{sid}-000000")
    events.wait_event("radio_segment", nth=3)  # two segments composed ahead of the one playing
    playing = soundfile.read(first["path"], dtype="float32")[0]
    client.request("radio_steer", {"prompt": "heavy metal, distorted guitars"})
    steered = events.wait_event("radio_segment", prompt="heavy metal, distorted guitars")
    assert steered["start_sec"] == first["duration_sec"]
    after = soundfile.read(steered["path"], dtype="float32")[0]
    steered_id = f"{sid}-{Path(steered['path']).stem}"
    events.wait_event("playback_start", track_id=steered_id)
    starts = [p["track_id"] for n, p in events.events if n == "playback_start"]
    assert starts[:2] == [f"{sid}-000000", steered_id]  # the old prompt's segments 1 and 2 were never heard
    events.wait_event("playback_start", nth=3)  # the steered segment played through
    client.request("radio_stop")
    events.wait_event("playback_end", reason="stopped", timeout=30)
    heard = _heard(out)
    stream = np.concatenate([playing, after])
    expected = to_mixer_rate(np.stack([stream, stream], axis=1), 32000)
    played = len(expected) - int(48000 * 0.3)  # the next segment's start crossfades nothing: it continues exactly
    assert len(heard) > len(expected)
    assert np.abs(heard[:played] - expected[:played]).max() < 1e-3  # joined exactly


def test_radio_refuses_what_it_cannot_do(radio) -> None:
    client, events, out = radio()
    for params, code in [
        ({"prompt": PROMPT, "strategy": "shuffle"}, "INVALID_PARAMS"),
        ({"prompt": PROMPT, "strategy": "preset_cycle"}, "INVALID_PARAMS"),
        ({"strategy": "continue"}, "INVALID_PROMPT"),
        ({"prompt": PROMPT, "strategy": "continue", "backend": "ace-step"}, "INVALID_PARAMS"),
        ({"prompt": PROMPT, "colour": "blue"}, "INVALID_PARAMS"),
    ]:
        with pytest.raises(LofiError) as err:
            client.request("radio_start", params)
        assert err.value.code == code, params
    with pytest.raises(LofiError) as err:
        client.request("radio_steer", {"prompt": "rain"})
    assert err.value.code == "INVALID_PARAMS" and "not playing" in err.value.message
    assert client.engine_pid is None and not out.exists()


def test_radio_slower_than_playback_rotates_what_it_has_and_never_goes_silent(radio, tmp_path) -> None:
    """Generation genuinely slower than real time (a decoder doing a larger model's work each step): the player
    loops what exists, crossfaded, and joins each new segment as it is ready; the output never goes silent."""
    from slow_model import slow_copy

    client, events, out = radio(model_dir=slow_copy(tmp_path / "slow-model", products=48), threads=1, crossfade_sec=1.0)
    started = client.request("radio_start", {"prompt": PROMPT, "seed": 5})
    first, second = (f"{started['stream_id']}-{n:06d}" for n in (0, 1))
    events.wait_event("playback_start", track_id=first, timeout=120)
    events.wait_event("playback_start", track_id=first, nth=2, timeout=120)  # it came round again: rotation
    events.wait_event("playback_start", track_id=second, timeout=120)  # and the next segment joined when ready
    state = client.request("radio")
    assert state["mode"] == "rotation" and state["realtime_factor"] > 1.0
    # issue 19 item 4: the user is told once, with the measured speed and what would keep up
    told = events.wait_event("service_warning", code="TOO_SLOW", timeout=120)["message"]
    assert told.startswith("small composes at ") and "× real time here" in told and "rotation" in told, told
    assert 'set model.variant = "small-int8"' in told, told
    events.wait_event("playback_start", track_id=f"{started['stream_id']}-000002", timeout=120)
    assert len(events.names("service_warning")) == 1
    client.request("radio_stop")
    events.wait_event("playback_end", reason="stopped", timeout=30)
    heard = _heard(out)
    assert len(heard) > 10 * 48000
    assert _longest_silence(heard) < 0.02 * 48000
    assert [d["mode"] for n, d in events.events if n == "radio_state"][:2] == ["starting", "rotation"]


def test_the_radios_first_window_is_heard_while_it_is_composed(radio, tmp_path) -> None:
    """Issue 19 item 2: composing slower than playing (as on a laptop), the first window starts playing once the
    ETA says playing it stays behind its composing, before it is finished; what is heard is that window, sample for
    sample (but for the fades of a pause, should the machine slow down)."""
    import soundfile
    from slow_model import slow_copy
    from lofi_engine.playback.audio import to_mixer_rate
    from lofi_engine.playback.mixer import WAIT_FADE_FRAMES
    from lofi_engine.service.live_play import can_start

    window = 12.0  # its first window (10 s) composed at about 2× real time here: it starts once the ETA says so
    client, events, out = radio(model_dir=slow_copy(tmp_path / "slow-model", products=16), threads=1, radio_window_sec=window, stall_timeout_sec=120)
    sid = client.request("radio_start", {"prompt": PROMPT, "seed": 5})["stream_id"]
    events.wait_event("playback_start", track_id=f"{sid}-000000", timeout=300)
    assert not events.names("radio_segment"), "heard before its window is finished"
    chunks = events.names("radio_chunk")
    first_window = 10.0 - 0.2  # the first window is 10 s (its last 0.2 s come with the next)
    assert chunks and {c["stream_id"] for c in chunks} == {sid} and {c["window_sec"] for c in chunks} == {first_window}
    assert can_start(first_window, chunks[-1]["eta_sec"])
    assert [c["start_sec"] for c in chunks] == [2.0 * n for n in range(len(chunks))]
    first = events.wait_event("radio_segment", timeout=300)
    assert first["start_sec"] == 0.0 and first["duration_sec"] == pytest.approx(first_window)
    segment = soundfile.read(first["path"], dtype="float32")[0]
    # the rotation plays it again (crossfaded), or the next window follows it: either way it was heard to its end
    events.wait_for(lambda evs: sum(1 for n, d in evs if n == "playback_start") >= 2, timeout=300)
    client.request("radio_stop")
    events.wait_event("playback_end", reason="stopped", timeout=30)
    expected = to_mixer_rate(np.stack([segment, segment], axis=1), 32000)
    heard = _heard(out)
    played = min(len(heard), len(expected)) - int(48000 * (2.0 + 0.3))  # before the (default 2 s) crossfade
    assert played > (first_window - 5) * 48000  # the chunks heard while it was composed (up to the rotation's crossfade)
    heard, expected = heard[:played], expected[:played]
    pauses = sum(1 for n, d in events.events if n == "playback_state" and d["state"] == "buffering")
    differs = np.flatnonzero(np.abs(heard - expected).max(axis=1) > 1e-3)
    assert len(differs) <= pauses * 2 * WAIT_FADE_FRAMES, (len(differs), pauses)
    assert not (client.config.cache_dir / "radio").exists() or not any((client.config.cache_dir / "radio").iterdir())


def test_radio_same_prompt_joins_separate_pieces_with_crossfades(radio) -> None:
    client, events, out = radio(radio_piece_sec=5, crossfade_sec=1.0)
    started = client.request("radio_start", {"prompt": PROMPT, "strategy": "same_prompt", "seed": 9})
    assert started["strategy"] == "same_prompt"
    pieces = [events.wait_event("generation_complete", nth=n, timeout=60)["track_id"] for n in (1, 2)]
    assert len(set(pieces)) == 2  # a new seed each piece
    events.wait_event("playback_start", track_id=pieces[1], timeout=60)
    client.request("radio_stop")
    events.wait_event("playback_end", reason="stopped", timeout=30)
    heard = _heard(out)
    assert _longest_silence(heard[: 5 * 48000]) < 0.02 * 48000
    assert client.cache.get(pieces[0]) is not None  # pieces are tracks of the library


def test_radio_preset_cycle_takes_its_prompts_in_turn(radio) -> None:
    client, events, out = radio(radio_piece_sec=5, crossfade_sec=0.5)
    client.request("radio_start", {"strategy": "preset_cycle", "presets": ["rain", "night drive", "forest"], "seed": 2})
    prompts = [events.wait_event("generation_start", nth=n, timeout=60)["prompt"] for n in (1, 2, 3)]
    assert prompts == ["rain", "night drive", "forest"]
    client.request("radio_stop")
    assert client.request("radio") == {"active": False, "mode": "stopped"}


def test_radio_files_stay_bounded_and_go_with_the_service(radio, monkeypatch) -> None:
    """Segment files leave with the rotation; closing with the radio on removes its folder."""
    import lofi_engine.service.radio as radio_module

    monkeypatch.setattr(radio_module, "MAX_ROTATION", 2)
    client, events, out = radio(radio_window_sec=3, radio_context_sec=1)
    started = client.request("radio_start", {"prompt": PROMPT, "seed": 5})
    folder = client.config.cache_dir / "radio" / started["stream_id"]
    events.wait_event("playback_start", track_id=f"{started['stream_id']}-000004", timeout=60)
    assert len(list(folder.glob("*.wav"))) <= 3  # the rotation's two and the newest
    client.close()
    assert not folder.exists()


@pytest.mark.parametrize(
    "params",
    [
        {"prompt": "lofi", "seed": -1}, {"prompt": "lofi", "seed": 2**32}, {"prompt": "lofi", "seed": 2**64},
        {"prompt": "lofi", "seed": 1e300}, {"prompt": "lofi", "seed": -(2**63)}, {"prompt": "lofi", "seed": 1.5},
        {"prompt": "lofi", "seed": "7"}, {"prompt": "lofi", "backend": "nope"}, {"prompt": "lofi", "backend": "MUSICGEN"},
        {"prompt": "lofi", "backend": ["musicgen"]}, {"prompt": "lofi", "backend": {"a": 1}}, {"prompt": "lofi", "strategy": "loud"},
        {"prompt": "lofi", "backend": "ace-step", "strategy": "same_prompt"}, {"prompt": "  "}, {"strategy": "preset_cycle", "presets": []},
    ],
)
def test_a_refused_radio_start_changes_nothing(radio, tmp_path, params) -> None:
    """Issue 23 item 3 (and issue 20: the seed rule is the request parser's): a bad start is refused with a coded error
    before anything changes; the radio stays off (a bad seed is refused, never replaced)."""
    client, events, out = radio(ace_step_model_dir=str(tmp_path / "no-export"))
    with pytest.raises(LofiError) as err:
        client.request("radio_start", params)
    assert err.value.code in ("INVALID_PARAMS", "INVALID_PROMPT", "MODEL_NOT_FOUND"), err.value
    assert client.request("radio") == {"active": False, "mode": "stopped"}
    assert client.request("queue")["running"] is None and not events.names("radio_state")


def test_a_track_played_by_hand_or_stop_ends_the_radio_for_every_client(radio) -> None:
    """Issue 20: the rule lives in the service, so `lofi serve` clients get it too."""
    client, events, out = radio()
    tid = client.request("generate", {"prompt": "rain", "duration_sec": 5, "seed": 1})["track_id"]
    events.wait_event("generation_complete", track_id=tid)
    client.request("radio_start", {"prompt": PROMPT, "seed": 2})
    events.wait_event("radio_segment")
    client.request("play", {"track_id": tid})
    events.wait_event("radio_state", active=False)
    assert client.request("radio")["active"] is False
    events.wait_event("playback_start", track_id=tid)
    client.request("radio_start", {"prompt": PROMPT, "seed": 2})
    events.wait_event("radio_state", active=True, nth=2)
    was = client.request("stop")
    assert was["sent"] == "stop"
    events.wait_event("radio_state", active=False, nth=2)
    assert client.request("radio")["active"] is False


def test_a_full_disk_makes_the_radio_wait_say_so_once_and_resume_by_itself(radio) -> None:
    """Issue 23 item 4: windows that cannot be written are retried after a growing wait (not 7 a second), the mode
    says "waiting for disk space" once, and the radio goes on by itself when it can write again."""
    import shutil

    client, events, out = radio()
    client.request("radio_start", {"prompt": PROMPT, "seed": 5})
    first = events.wait_event("radio_segment")
    folder = Path(first["path"]).parent
    shutil.rmtree(folder)
    folder.write_text("not a folder: writing a segment here fails as on a full disk")
    events.wait_event("radio_error", code="WRITE_FAILED", nth=3, timeout=120)
    assert client.request("radio")["mode"] == "waiting for disk space"
    folder.unlink()
    folder.mkdir()
    later = len(events.names("radio_segment"))
    events.wait_for(lambda evs: sum(1 for n, _ in evs if n == "radio_segment") > later, timeout=120)
    waiting = [p for p in events.names("radio_state") if p["mode"] == "waiting for disk space"]
    assert len(waiting) == 1 and client.request("radio")["mode"] in ("live", "rotation")


def test_after_an_engine_crash_the_radio_starts_its_stream_over_and_says_so(radio) -> None:
    """Issue 23 item 5: the engine lost the stream's codes; the next segment says it restarts (start 0.0) and the
    player crossfades into it instead of joining it as a continuation."""
    import signal

    client, events, out = radio()
    client.request("radio_start", {"prompt": PROMPT, "seed": 6})
    first = events.wait_event("radio_segment")
    assert "restarted" not in first
    os.kill(client.engine_pid, signal.SIGKILL)
    after = events.wait_event("radio_segment", restarted=True, timeout=120)
    assert after["start_sec"] == 0.0
    assert client.request("radio")["active"] is True
