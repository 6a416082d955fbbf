"""Issue 19 item 2: a piece is heard while it is composed (`generate {play: true}`). The engine's decoded chunks go to
the player as one track that grows; what the player writes equals the finished track with no gap and no repeat;
when composing is slower, playing starts when the ETA says it will not catch up; a forced stall (the engine
stopped) makes the player wait cleanly and go on. Real service, real player process, real mpv writing to a file,
real signals; every wait is on an event."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import PROMPT, TINY

from lofi_engine.playback.audio import to_mixer_rate
from lofi_engine.playback.mixer import OPEN_HOLD_FRAMES, WAIT_FADE_FRAMES, Mixer, Track
from lofi_engine.service.live_play import can_start
from test_playback import played


def _tone(frames: int) -> np.ndarray:
    x = (0.4 * np.sin(2 * np.pi * 440 * np.arange(frames) / 48000)).astype(np.float32)
    return np.stack([x, x], axis=1)


def _render_all(mixer: Mixer, block: int = 2400) -> np.ndarray:
    out = []
    while not mixer.idle and not mixer.waiting:
        audio, _ = mixer.render(block)
        out.append(audio)
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


# ---- the mixer: a track that grows -------------------------------------------------------------------------------


def test_a_growing_track_extended_in_time_plays_exactly_its_samples() -> None:
    whole = _tone(48000 * 3)
    mixer = Mixer(loop=False)
    mixer.start([Track("t", whole[:48000].copy(), open=True)])
    heard = [mixer.render(24000)[0]]  # half of what has arrived
    mixer.extend("t", np.zeros((0, 2), np.float32), whole[48000:96000])
    heard.append(mixer.render(48000)[0])
    mixer.extend("t", np.zeros((0, 2), np.float32), whole[96000:])
    mixer.close("t")
    heard.append(_render_all(mixer))
    np.testing.assert_array_equal(np.concatenate(heard)[: len(whole)], whole)
    assert mixer.waits == 0 and mixer.idle


def test_catching_up_waits_with_a_fade_and_goes_on_from_the_next_sample() -> None:
    whole = _tone(48000 * 2)
    arrived = 48000
    mixer = Mixer(loop=False)
    mixer.start([Track("t", whole[:arrived].copy(), open=True)])
    before = _render_all(mixer)
    assert mixer.waiting and mixer.waits == 1
    paused_at = arrived - OPEN_HOLD_FRAMES  # the held-back end is not played before what follows corrects it
    assert len(before) == paused_at
    assert mixer.render(4800)[0].shape == (0, 2)  # waiting: nothing at all, not silence
    mixer.extend("t", np.zeros((0, 2), np.float32), whole[arrived:])
    mixer.close("t")
    after = _render_all(mixer)
    heard = np.concatenate([before, after])[: len(whole)]
    assert len(heard) == len(whole)  # no gap, no repeat
    away = np.ones(len(whole), dtype=bool)
    away[paused_at - WAIT_FADE_FRAMES : paused_at + WAIT_FADE_FRAMES] = False
    np.testing.assert_array_equal(heard[away], whole[away])
    fade = slice(paused_at - WAIT_FADE_FRAMES, paused_at + WAIT_FADE_FRAMES)
    assert np.all(np.abs(heard[fade]) <= np.abs(whole[fade]) + 1e-7)  # only ever quieter around the pause
    assert np.abs(heard[paused_at - 4 : paused_at + 4]).max() < 0.02  # faded to nothing on both sides: no click


@pytest.mark.parametrize(("duration", "eta", "starts"), [(30, 5, True), (30, 23, True), (30, 24, False), (30, None, False), (10, 9, False)])
def test_it_starts_when_the_eta_says_playing_stays_behind_composing(duration: float, eta: float | None, starts: bool) -> None:
    assert can_start(duration, eta) is starts


# ---- through the service, with the real player -----------------------------------------------------------------


def _finished_track(client, track_id: str) -> np.ndarray:
    import soundfile

    audio, rate = soundfile.read(client.cache.wav_path(track_id), dtype="float32", always_2d=True)
    return to_mixer_rate(np.repeat(audio, 2, axis=1), rate)


def test_a_piece_plays_as_it_is_composed_and_what_is_heard_is_the_track(heard_service) -> None:
    client, events, out = heard_service(model_dir=str(TINY), playlist_loop=False)
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 10, "seed": 4, "play": True})["track_id"]
    events.wait_event("playback_start", track_id=tid, timeout=120)
    events.wait_event("generation_complete", track_id=tid, timeout=120)
    events.wait_event("playback_end", track_id=tid, reason="finished", timeout=120)
    heard, track = played(out), _finished_track(client, tid)
    assert len(heard) >= len(track)
    np.testing.assert_allclose(heard[: len(track)], track, atol=1e-4, rtol=0)  # every sample, in order, once
    # (past the end: mpv's PCM writer pads its last period with stale samples whatever was played; not ours)
    assert not [d for n, d in events.events if n == "playback_state" and d["state"] == "buffering"]


def test_slower_composing_starts_when_the_eta_says_and_a_stall_pauses_and_resumes_cleanly(heard_service, tmp_path: Path) -> None:
    from slow_model import slow_copy

    client, events, out = heard_service(model_dir=str(slow_copy(tmp_path / "slow-model", products=48)), threads=1, stall_timeout_sec=120, playlist_loop=False)
    duration = 12
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": duration, "seed": 4, "play": True})["track_id"]
    events.wait_event("playback_start", track_id=tid, timeout=300)
    progress = [d for n, d in events.events if n == "generation_progress" and d["track_id"] == tid]
    assert not [d for d in events.names("generation_complete") if d["track_id"] == tid] and progress
    assert not can_start(duration, progress[0]["eta_sec"])  # composing is slower than playing: it waited…
    assert can_start(duration, progress[-1]["eta_sec"])  # …until the ETA said playing would stay behind
    pid = client.engine_pid
    os.kill(pid, signal.SIGSTOP)  # the machine slows down: playing catches up with composing
    try:
        events.wait_event("playback_state", state="buffering", track_id=tid, timeout=60)
    finally:
        os.kill(pid, signal.SIGCONT)
    events.wait_event("generation_complete", track_id=tid, timeout=300)
    events.wait_event("playback_end", track_id=tid, reason="finished", timeout=120)
    heard, track = played(out), _finished_track(client, tid)
    heard = heard[: len(track)]
    assert len(heard) == len(track)  # nothing skipped, nothing repeated, no silence written while it waited
    differs = np.flatnonzero(np.abs(heard - track).max(axis=1) > 1e-4)
    assert len(differs) and differs[-1] - differs[0] < 2 * WAIT_FADE_FRAMES, "only the fade out and in around the pause"
    assert "waiting for more of it (1 time so far)" in (tmp_path / "player.log").read_text()


def test_a_growing_track_whose_next_chunk_is_gone_plays_what_arrived_and_the_player_lives_on(heard_service, tmp_path: Path) -> None:
    """A chunk deleted before the player read it (a stop removed the radio's folder meanwhile): the player plays what
    it has of the track to its end, says so in its log, and keeps obeying (it used to crash on its own message)."""
    import soundfile

    client, events, out = heard_service(model_dir=str(TINY), playlist_loop=False)
    soundfile.write(tmp_path / "first.wav", _tone(48000)[:, 0], 48000)
    # the service's own calls for a piece heard while composed (what `generate {play: true}` and the radio send)
    client._playback.play_now([{"track_id": "g" * 16, "path": str(tmp_path / "first.wav"), "info": {"duration_sec": 3.0}, "open": True}])
    client._playback.extend("g" * 16, [str(tmp_path / "gone.wav")])
    ended = events.wait_event("playback_end", track_id="g" * 16, timeout=60)
    assert ended["reason"] == "finished", ended
    assert "cannot read gone.wav" in (tmp_path / "player.log").read_text()
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    events.wait_event("generation_complete", track_id=tid)
    client.request("play", {"track_id": tid})
    events.wait_event("playback_start", track_id=tid)
    assert not [d for n, d in events.events if n == "playback_end" and d.get("reason") == "error"]


def test_a_continued_piece_plays_the_audio_it_continues_while_the_rest_is_composed(heard_service, tmp_path: Path) -> None:
    """Issue 21 with issue 19's live play: `generate {continue_from, play: true}` starts with the user's audio (its seam
    included) while the new music is composed, and what is heard is the finished track, sample for sample."""
    import soundfile
    from slow_model import slow_copy

    encodec = Path(__file__).parent / "fixtures" / "encodec-tiny"
    client, events, out = heard_service(model_dir=str(slow_copy(tmp_path / "slow-model", products=8)), encodec_dir=str(encodec), threads=1,
                                        playlist_loop=False)
    t = np.arange(10 * 32000) / 32000
    soundfile.write(tmp_path / "mine.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 32000)
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 4, "play": True, "continue_from": str(tmp_path / "mine.wav")})["track_id"]
    events.wait_event("playback_start", track_id=tid, timeout=300)
    assert not [d for d in events.names("generation_complete") if d["track_id"] == tid], "heard before it was finished"
    first = next(d for n, d in events.events if n == "generation_chunk" and d["track_id"] == tid)
    assert first["start_sec"] == 0.0 and first["duration_sec"] == 10.0  # the audio continued comes first
    events.wait_event("generation_complete", track_id=tid, timeout=300)
    events.wait_event("playback_end", track_id=tid, reason="finished", timeout=120)
    heard, track = played(out), _finished_track(client, tid)
    assert len(track) == 15 * 48000 and len(heard) >= len(track)
    np.testing.assert_allclose(heard[: len(track)], track, atol=1e-4, rtol=0)
    assert not [d for n, d in events.events if n == "playback_state" and d["state"] == "buffering"]
