"""Issue 13, the player: a real mpv fed the mixed stream, its output written to a file we read back.

The tracks are tones written into the real track store, so every sample the player should have played is known:
crossfades, pause/resume, volume, skip and loops are checked sample by sample.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from lofi_engine import LofiError
from lofi_engine.engine.wav import write_wav
from lofi_engine.audio.resample import resample
from lofi_engine.service.client import EngineClient
from lofi_engine.store.tracks import TrackCache

RATE = 48000
pytestmark = pytest.mark.skipif(not any(os.access(os.path.join(d, "mpv"), os.X_OK) for d in os.environ["PATH"].split(os.pathsep)), reason="mpv is installed by `make test`")


def tone(freq: float, seconds: float, amp: float = 0.4, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x, x], axis=1) if rate == RATE else x


def noise(seconds: float, seed: int = 1) -> np.ndarray:
    """Unlike a tone, no stretch of it looks like another: where it sits in the output is unambiguous."""
    return (np.random.default_rng(seed).standard_normal((int(seconds * RATE), 2)) * 0.2).astype(np.float32)


def locate(heard: np.ndarray, track: np.ndarray, at: int) -> int:
    """Where ``track`` begins in ``heard``, found from its stretch at ``at`` (which must play unfaded)."""
    probe = track[at : at + 64, 0]
    windows = np.lib.stride_tricks.sliding_window_view(heard[:, 0], len(probe))
    found = np.nonzero(np.abs(windows - probe).max(axis=1) < 1e-6)[0]
    assert len(found) == 1, f"the track appears {len(found)} times"
    return int(found[0]) - at


def add_track(cache: TrackCache, track_id: str, audio: np.ndarray, rate: int = RATE, prompt: str = "tone") -> None:
    path = write_wav(cache.wav_path(track_id), audio, rate)
    cache.put({"track_id": track_id, "path": str(path), "duration_sec": len(audio) / rate, "sample_rate": rate, "prompt": prompt,
               "seed": 1, "generation_time_sec": 0.0, "model_version": "test", "backend": "musicgen", "channels": 1 if audio.ndim == 1 else 2})


@pytest.fixture
def player(heard_service, tmp_path: Path):
    """A service with tone tracks in its store (no model needed) and mpv writing what it plays to out.wav."""
    return lambda **settings: heard_service(model_dir=str(tmp_path), **settings)


A, B, C = "a" * 16, "b" * 16, "c" * 16
# 16-bit WAVs: the tones come back quantised, so compare with what the store holds
def stored(client: EngineClient, track_id: str) -> np.ndarray:
    audio, rate = soundfile.read(client.cache.wav_path(track_id), dtype="float32", always_2d=True)
    return audio if rate == RATE else np.stack([resample(audio[:, 0], rate, RATE)] * 2, axis=1)


def played(out: Path) -> np.ndarray:
    audio, rate = soundfile.read(out, dtype="float32", always_2d=True)
    assert rate == RATE and audio.shape[1] == 2
    return audio


def equal_power(a: np.ndarray, b: np.ndarray, fade: int) -> np.ndarray:
    ramp = (np.arange(fade) + 0.5) / fade * (np.pi / 2)
    mixed = a[len(a) - fade :] * np.cos(ramp)[:, None] + b[:fade] * np.sin(ramp)[:, None]
    return np.concatenate([a[: len(a) - fade], mixed, b[fade:]])


def longest_silence(audio: np.ndarray) -> int:
    quiet = np.abs(audio).max(axis=1) < 1e-4
    longest = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        longest = max(longest, run)
    return longest


def test_consecutive_tracks_crossfade_for_real(player) -> None:
    client, events, out = player(crossfade_sec=1.0, playlist_loop=False)
    add_track(client.cache, A, tone(440, 3))
    add_track(client.cache, B, tone(660, 3))
    client.request("play", {"track_ids": [A, B]})
    assert events.wait_event("playback_end", track_id=B, timeout=30)["reason"] == "finished"
    heard = played(out)
    expected = equal_power(stored(client, A), stored(client, B), RATE)
    assert len(heard) >= len(expected) and np.abs(heard[: len(expected)] - expected).max() < 1e-6
    overlap = heard[2 * RATE : 3 * RATE, 0]  # both tones sound in the overlap
    spectrum = np.abs(np.fft.rfft(overlap))
    assert spectrum[440] > 0.05 * spectrum.max() and spectrum[660] > 0.05 * spectrum.max()
    assert longest_silence(heard[: len(expected)]) < 0.02 * RATE
    own = max(np.abs(np.diff(stored(client, t)[:, 0])).max() for t in (A, B))
    for join in (2 * RATE, 3 * RATE):  # where the fade begins and ends: no click
        assert np.abs(np.diff(heard[join - 3 : join + 3, 0])).max() <= own * 1.01
    names = [(n, d["track_id"]) for n, d in events.events if n.startswith("playback_") and n != "playback_state"]
    assert names == [("playback_start", A), ("playback_start", B), ("playback_end", A), ("playback_end", B)]


def test_a_looped_track_joins_its_tail_to_its_head_without_a_gap(player) -> None:
    """Issue 13 item 5: one track on loop: its last second crossfades into its first."""
    client, events, out = player(crossfade_sec=1.0, playlist_loop=True)
    add_track(client.cache, A, tone(330, 2.5) * np.linspace(1, 0.5, int(2.5 * RATE), dtype=np.float32)[:, None])
    client.request("play", {"track_id": A})
    events.wait_event("playback_start", track_id=A, timeout=30, nth=2)  # the second time round has begun…
    events.wait_event("playback_end", track_id=A, reason="finished", timeout=30)  # …and the first is over
    client.request("stop")
    assert events.wait_event("playback_end", track_id=A, reason="stopped", timeout=30)
    heard, track = played(out), stored(client, A)
    joined = equal_power(track, track, RATE)[: len(track)]  # the first pass, its last second crossed into the head
    assert len(heard) > len(track) and np.abs(heard[: len(track)] - joined).max() < 1e-6
    assert longest_silence(heard) < 0.02 * RATE or np.abs(heard[len(track) :]).max() < 1e-4  # silent only once stopped
    assert longest_silence(heard[: len(track)]) < 0.02 * RATE


def test_pause_holds_the_stream_and_resume_continues_it_sample_for_sample(player) -> None:
    client, events, out = player(crossfade_sec=0, playlist_loop=False)
    add_track(client.cache, A, tone(440, 3))
    client.request("play", {"track_id": A})
    events.wait_event("playback_start", track_id=A)
    client.request("pause")
    events.wait_event("playback_pause", track_id=A)
    time.sleep(0.5)  # whatever was on its way has arrived
    held = out.stat().st_size
    assert client.request("playback")["state"] == "paused"
    time.sleep(1.0)  # observing that nothing advances takes a while by nature
    assert out.stat().st_size == held
    client.request("resume")
    events.wait_event("playback_resume", track_id=A)
    assert events.wait_event("playback_end", track_id=A, timeout=30)["reason"] == "finished"
    heard, track = played(out), stored(client, A)
    assert np.abs(heard[: len(track)] - track).max() < 1e-6 and longest_silence(heard[: len(track)]) < 0.02 * RATE


def test_volume_scales_the_output(player) -> None:
    client, events, out = player(crossfade_sec=0, playlist_loop=False, volume=50)
    add_track(client.cache, A, tone(440, 1.5))
    client.request("play", {"track_id": A})
    events.wait_event("playback_end", track_id=A, timeout=30)
    heard, track = played(out), stored(client, A)
    assert np.abs(heard[: len(track)] - 0.5 * track).max() < 1e-6


def test_volume_changes_while_playing(player) -> None:
    client, events, out = player(crossfade_sec=0, playlist_loop=False)
    add_track(client.cache, A, tone(440, 3))
    client.request("play", {"track_id": A})
    events.wait_event("playback_start", track_id=A)
    client.request("volume", {"level": 25})
    events.wait_event("playback_end", track_id=A, timeout=30)
    heard, track = played(out), stored(client, A)
    tail = slice(len(track) - RATE // 2, len(track))  # well after the change reached the stream
    assert np.abs(heard[tail] - 0.25 * track[tail]).max() < 1e-6
    assert np.abs(heard[:2400] - track[:2400]).max() < 1e-6  # it began at full volume


def test_skip_moves_to_the_next_track(player) -> None:
    client, events, out = player(crossfade_sec=0.5, playlist_loop=False)
    add_track(client.cache, A, tone(440, 20))
    add_track(client.cache, B, noise(2))
    client.request("play", {"track_ids": [A, B]})
    events.wait_event("playback_start", track_id=A)
    client.request("skip")
    assert events.wait_event("playback_end", track_id=A, timeout=10)["reason"] == "skipped"
    assert events.wait_event("playback_end", track_id=B, timeout=30)["reason"] == "finished"
    heard, b = played(out), stored(client, B)
    assert len(heard) < 10 * RATE  # A's 20 s did not play out
    start = locate(heard, b, RATE)
    fade = RATE // 2
    assert np.abs(heard[start + fade : start + len(b)] - b[fade:]).max() < 1e-6  # B from its fade-in to its end, whole


def test_a_32khz_mono_track_is_resampled_and_mixed_with_a_stereo_one(player) -> None:
    client, events, out = player(crossfade_sec=0.5, playlist_loop=False)
    add_track(client.cache, A, tone(440, 2, rate=32000), rate=32000)
    add_track(client.cache, B, tone(660, 2))
    client.request("play", {"track_ids": [A, B]})
    events.wait_event("playback_end", track_id=B, timeout=30)
    heard = played(out)
    expected = equal_power(stored(client, A), stored(client, B), RATE // 2)
    assert np.abs(heard[: len(expected)] - expected).max() < 1e-6


def test_playlist_requests_and_bad_input_get_clear_errors(player) -> None:
    client, events, out = player(playlist_loop=False)
    add_track(client.cache, A, tone(440, 1))
    for method, params, code in [
        ("play", {"track_id": C}, "TRACK_NOT_FOUND"),
        ("play", {"track_id": "../../etc/passwd"}, "INVALID_PARAMS"),
        ("volume", {"level": 150}, "INVALID_PARAMS"),
        ("volume", {"level": "loud"}, "INVALID_PARAMS"),
        ("playlist_add", {"track_id": C}, "TRACK_NOT_FOUND"),
        ("playlist_loop", {"enabled": "yes"}, "INVALID_PARAMS"),
    ]:
        with pytest.raises(LofiError) as err:
            client.request(method, params)
        assert err.value.code == code, (method, params, err.value)
    assert not out.exists()  # nothing bad reached the player


def test_a_missing_player_is_player_unavailable_and_a_failing_one_is_reported(player, tmp_path: Path) -> None:
    client, events, out = player(player_command="no-such-player --flag")
    add_track(client.cache, A, tone(440, 1))
    with pytest.raises(LofiError) as err:
        client.request("play", {"track_id": A})
    assert err.value.code == "PLAYER_UNAVAILABLE" and "no-such-player" in err.value.message
    failing = tmp_path / "failing-player"
    failing.write_text("#!/bin/sh\necho 'cannot open audio device: no such card' >&2\nexit 2\n")
    failing.chmod(0o755)
    client, events, out = player(player_command=str(failing))
    add_track(client.cache, A, tone(440, 1))
    client.request("play", {"track_id": A})
    ended = events.wait_event("playback_end", track_id=A, timeout=30)
    assert ended["reason"] == "error" and ended["code"] == "PLAYBACK_FAILED" and "no such card" in ended["message"]


def test_closing_the_service_leaves_no_player_behind(player) -> None:
    client, events, out = player(playlist_loop=True)
    add_track(client.cache, A, tone(440, 2))
    client.request("play", {"track_id": A})
    events.wait_event("playback_start", track_id=A)
    pid = client._playback._link.pid
    client.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# ---- the track library ---------------------------------------------------------------------------------------------


def test_the_library_lists_sizes_deletes_and_clears_but_never_what_is_playing(player) -> None:
    client, events, out = player(playlist_loop=True)
    for track_id, freq in ((A, 440), (B, 550), (C, 660)):
        add_track(client.cache, track_id, tone(freq, 1))
    assert [m["track_id"] for m in client.request("cache_list")] == [C, B, A]  # most recently added/played first
    stats = client.request("cache_stats")
    assert stats["count"] == 3 and stats["bytes"] >= 3 * 48000 * 2 * 2 and stats["oldest"] <= stats["newest"]
    client.request("play", {"track_id": A})
    assert client.request("playback")["track_id"] == A
    with pytest.raises(LofiError) as err:
        client.request("cache_delete", {"track_id": A})
    assert err.value.code == "INVALID_PARAMS" and "playing" in err.value.message
    assert client.request("cache_delete", {"track_id": B}) == {"deleted": [B]}
    assert not client.cache.wav_path(B).exists()
    with pytest.raises(LofiError) as err:
        client.request("cache_delete", {"track_id": B})
    assert err.value.code == "TRACK_NOT_FOUND"
    with pytest.raises(LofiError) as err:
        client.request("cache_delete", {"track_id": "/etc/passwd"})
    assert err.value.code == "INVALID_PARAMS"
    assert client.request("cache_clear") == {"deleted": [C], "kept": [A]}
    assert [m["track_id"] for m in client.request("cache_list")] == [A]


@pytest.mark.parametrize("kind", ["wav", "flac", "ogg", "mp3"])
def test_a_track_is_saved_in_the_format_asked(player, tmp_path: Path, kind: str) -> None:
    client, events, out = player()
    add_track(client.cache, A, tone(440, 1))
    target = tmp_path / "exports" / f"my tune.{kind}"
    target.parent.mkdir()
    saved = client.request("save", {"track_id": A, "path": str(target)})
    assert saved["path"] == str(target) and saved["format"] == kind
    info = soundfile.info(target)
    assert info.samplerate == RATE and abs(info.duration - 1.0) < 0.1
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".part")]
    with pytest.raises(LofiError) as err:
        client.request("save", {"track_id": A, "path": str(target)})
    assert err.value.code == "WRITE_FAILED" and "exists" in err.value.message
    assert client.request("save", {"track_id": A, "path": str(target), "overwrite": True})["path"] == str(target)


def test_saving_to_an_unwritable_place_is_write_failed_and_leaves_nothing(player, tmp_path: Path) -> None:
    client, events, out = player()
    add_track(client.cache, A, tone(440, 1))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(LofiError) as err:
        client.request("save", {"track_id": A, "path": str(blocker / "x.flac")})
    assert err.value.code == "WRITE_FAILED"
    with pytest.raises(LofiError) as err:
        client.request("save", {"track_id": A, "path": str(tmp_path / "x.aiff")})
    assert err.value.code == "INVALID_PARAMS" and "wav, flac, ogg, mp3" in err.value.message


@pytest.mark.parametrize("path", [".", "/", "~nosuchuser/out.wav", "out\0.wav", "x" * 300 + ".wav", "{tmp}/", "{tmp}"])
def test_saving_to_a_path_that_names_no_file_is_a_coded_error_naming_it(player, tmp_path: Path, path: str) -> None:
    """Issue 23 item 6: these were INTERNAL_ERROR (-32603) over JSON-RPC."""
    client, events, out = player()
    add_track(client.cache, A, tone(440, 1))
    path = path.format(tmp=tmp_path)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(LofiError) as err:
        client.request("save", {"track_id": A, "path": path})
    assert err.value.code in ("INVALID_PARAMS", "WRITE_FAILED") and (path[:20] in err.value.message or "NUL" in err.value.message), err.value
    assert sorted(tmp_path.iterdir()) == before


def test_saving_never_makes_folders_unasked_nor_writes_through_a_link(player, tmp_path: Path) -> None:
    """Issue 23 item 7: save made missing folders three levels deep without a word, replaced a link's target with
    overwrite, and wrote ``passwd.wav`` beside an existing ``passwd``. Each is refused with WRITE_FAILED naming the
    path, and nothing on disk changes; asked for (make_dirs), the folders are made."""
    client, events, out = player()
    add_track(client.cache, A, tone(440, 1))
    deep = tmp_path / "a" / "b" / "c" / "x.wav"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.wav"
    link.symlink_to(victim)
    plain = tmp_path / "passwd"
    plain.write_text("root:x:0:0")
    before = snapshot(tmp_path)

    def refused(params: dict, *words: str) -> None:
        with pytest.raises(LofiError) as err:
            client.request("save", {"track_id": A, **params})
        assert err.value.code == "WRITE_FAILED" and all(w in err.value.message for w in words), err.value
        assert snapshot(tmp_path) == before

    refused({"path": str(deep)}, str(deep.parent), "make_dirs")
    refused({"path": str(link), "overwrite": True}, str(link), "link")
    refused({"path": str(plain), "overwrite": True}, str(plain), "passwd.wav")
    assert victim.read_text() == "keep me" and link.is_symlink()
    saved = client.request("save", {"track_id": A, "path": str(deep), "make_dirs": True})
    assert saved["path"] == str(deep) and soundfile.info(str(deep)).frames == RATE
    beside = client.request("save", {"track_id": A, "path": str(tmp_path / "song")})  # nothing named "song": song.wav
    assert beside["path"] == str(tmp_path / "song.wav")


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry under ``folder`` (links not followed): its mode and its bytes or link text."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = os.lstat(path)
        body = os.readlink(path).encode() if stat.S_ISLNK(info.st_mode) else path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
        found[str(path)] = (info.st_mode, body)
    return found


# ---- issue 20: what music players have, each rule in the service ----------------------------------------------------


def test_seek_plays_the_track_from_the_asked_second(player) -> None:
    """`seek {to}` (`:LofiSeek 1:20`) and `seek {by}` (`:LofiSeek +30`): what is heard after it is the track from there."""
    client, events, out = player(crossfade_sec=0, playlist_loop=False)
    track = noise(6)
    add_track(client.cache, A, track)
    client.request("play", {"track_id": A})
    events.wait_event("playback_start", track_id=A)
    answer = client.request("seek", {"to": 4.0})
    assert answer["sent"] == "seek" and answer["position_sec"] == 4.0 and answer["track_id"] == A
    events.wait_event("playback_end", track_id=A, timeout=30)
    heard, stored_track = played(out), stored(client, A)
    # the stretch at 4.5 s of the track is heard once, sooner than 4.5 s into the output: the seek skipped ahead
    start = locate(heard, stored_track, int(4.5 * RATE))
    assert start < 0 and np.abs(heard[start + int(4.5 * RATE) : start + len(stored_track)] - stored_track[int(4.5 * RATE) :]).max() < 1e-6
    assert len(heard) < len(stored_track)


def test_seek_by_is_clamped_to_the_track_and_needs_something_playing(player) -> None:
    client, events, out = player(crossfade_sec=0, playlist_loop=False)
    add_track(client.cache, A, tone(440, 3))
    with pytest.raises(LofiError) as err:
        client.request("seek", {"by": 10})
    assert err.value.code == "NOT_PLAYING"
    for bad in ({}, {"to": -1}, {"by": "ten"}, {"to": 1, "by": 1}, {"by": float("nan")}):
        with pytest.raises(LofiError) as err:
            client.request("seek", bad)
        assert err.value.code == "INVALID_PARAMS", bad
    client.request("play", {"track_id": A})
    events.wait_event("playback_start", track_id=A)
    assert client.request("seek", {"by": -100})["position_sec"] == 0.0
    assert client.request("seek", {"by": 100})["position_sec"] == 3.0
    events.wait_event("playback_end", track_id=A, timeout=30)


@pytest.mark.parametrize(("start", "change", "level", "limited"), [(50, 10, 60, False), (50, -80, 0, True), (95, 10, 100, True)])
def test_relative_volume_stops_at_the_ends_and_says_so(player, start: int, change: int, level: int, limited: bool) -> None:
    """`:LofiVolume +10` / `-80`: the service owns the range; the answer says where it ended and whether it was cut."""
    client, events, out = player(crossfade_sec=0, playlist_loop=False, volume=start)
    assert client.request("volume", {"change": change}) == {"sent": "settings", "volume": level, "limited": limited}
    for bad in ({"level": 101}, {"level": -1}, {"change": "up"}, {}, {"level": 5, "change": 5}):
        with pytest.raises(LofiError) as err:
            client.request("volume", bad)
        assert err.value.code == "INVALID_PARAMS" and "0" in err.value.message, bad


def test_controls_say_what_they_acted_on_or_that_nothing_plays(player) -> None:
    client, events, out = player(crossfade_sec=0, playlist_loop=True)
    add_track(client.cache, A, tone(440, 3), prompt="rainy piano")
    for name in ("pause", "resume", "toggle", "skip"):
        with pytest.raises(LofiError) as err:
            client.request(name)
        assert err.value.code == "NOT_PLAYING", name
    assert client.request("stop") == {"sent": "stop", "was": None}
    client.request("play", {"track_id": A})
    events.wait_event("playback_start", track_id=A)
    paused = client.request("toggle")
    assert paused["sent"] == "pause" and paused["prompt"] == "rainy piano"
    events.wait_event("playback_pause", track_id=A)
    now = client.request("now_playing")
    assert now["state"] == "paused" and now["prompt"] == "rainy piano" and now["duration_sec"] == 3.0 and now["volume"] == 100
    was = client.request("stop")["was"]
    assert was["track_id"] == A and was["prompt"] == "rainy piano"
    events.wait_event("playback_end", track_id=A, reason="stopped")


def test_playback_state_follows_replaying_the_track_that_plays(player) -> None:
    """Issue 20 item 1: playing the track that plays again keeps it shown as playing (its old pass ending is not the
    end of what plays)."""
    client, events, out = player(crossfade_sec=0, playlist_loop=True)
    add_track(client.cache, A, tone(440, 4), prompt="again")
    client.request("play", {"track_id": A})
    events.wait_event("playback_state", track_id=A, state="playing")
    client.request("play", {"track_id": A})
    events.wait_event("playback_end", track_id=A, reason="skipped")
    last = events.wait_event("playback_state", track_id=A, state="playing", nth=2)
    assert last["prompt"] == "again"
    states = [p for n, p in events.events if n == "playback_state"]
    assert states[-1]["state"] == "playing" and client.request("now_playing")["track_id"] == A
    before = len(events.events)
    assert client.request("stop")["was"]["track_id"] == A
    events.wait_for(lambda evs: any(n == "playback_state" and p["state"] == "stopped" for n, p in evs[before:]))


def test_shuffle_keeps_the_track_playing_and_every_other_once_and_off_restores_the_order(player) -> None:
    client, events, out = player(crossfade_sec=0, playlist_loop=False)
    ids = [c * 16 for c in "abcdef"]
    for i, tid in enumerate(ids):
        add_track(client.cache, tid, tone(300 + 50 * i, 20))
    client.request("play", {"track_ids": ids})
    events.wait_event("playback_start", track_id=ids[0])
    assert client.request("shuffle", {"enabled": True})["shuffle"] is True
    events.wait_event("playback_state", shuffle=True)
    order = client.request("playback")["playlist"]
    assert order[0] == ids[0] and sorted(order) == sorted(ids)
    before = len(events.events)
    assert client.request("shuffle", {})["shuffle"] is False  # none: turn it over
    events.wait_for(lambda evs: any(n == "playback_state" and not p["shuffle"] for n, p in evs[before:]))
    assert client.request("playback")["playlist"] == ids
    client.request("stop")


def test_a_stalled_audio_player_is_obeyed_again_once_it_runs(player) -> None:
    """Issue 23 item 1: mpv stopped for 3 s (SIGSTOP), then continued: pause and stop act again (the player's clock
    starts over from what mpv actually took, instead of racing to catch up)."""
    import signal

    # mpv's null output takes audio in real time, as a sound card does (the pcm file output takes it at once)
    client, events, out = player(crossfade_sec=0, playlist_loop=True, player_command="mpv --no-config --really-quiet --no-video --ao=null")
    add_track(client.cache, A, tone(440, 2))
    client.request("play", {"track_id": A})
    events.wait_event("playback_start", track_id=A)
    mpv = mpv_of(client)
    os.kill(mpv, signal.SIGSTOP)
    try:
        time.sleep(3)  # the stall itself (not a wait for an event: nothing happens during it)
    finally:
        os.kill(mpv, signal.SIGCONT)
    client.request("pause")
    events.wait_event("playback_pause", track_id=A, timeout=30)
    client.request("stop")
    events.wait_event("playback_end", track_id=A, reason="stopped", timeout=30)


def mpv_of(client: EngineClient) -> int:
    """The pid of the audio player the service's player process feeds."""
    player_pid = client._playback._link.pid
    for _ in range(200):
        children = Path(f"/proc/{player_pid}/task/{player_pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("the player process started no audio player")


def test_player_and_radio_settings_apply_live_without_restarting_the_engine(player, tmp_path: Path) -> None:
    """Issue 20 item 4: setup() with only player.volume (or crossfade, or a radio length) changed does not restart the
    engine (no model reload); the playing player takes the new volume at once."""
    from lofi_engine.shared.settings import Settings

    client, events, out = player(crossfade_sec=0, playlist_loop=False)
    settings = client.settings.to_dict()
    add_track(client.cache, A, tone(440, 4))
    client.request("play", {"track_id": A})
    events.wait_event("playback_start", track_id=A)
    changed = Settings.from_dict({**settings, "volume": 25, "crossfade_sec": 1.0, "radio_window_sec": 8})
    assert client.reconfigure(changed) == {"kept_jobs": 0}
    events.wait_event("playback_state", volume=25)
    events.wait_event("playback_end", track_id=A, timeout=30)
    heard, track = played(out), stored(client, A)
    tail = slice(len(track) - RATE // 2, len(track))
    assert np.abs(heard[tail] - 0.25 * track[tail]).max() < 1e-6


def test_a_player_killed_by_the_watchdog_takes_its_audio_player_with_it(player, tmp_path: Path) -> None:
    """Issue 23 item 2: a player command that never reads its input blocks the player process; the watchdog kills the
    process and everything it started (its process group), and nothing is left behind (no process of ppid 1)."""
    deaf = tmp_path / "deaf-player"
    deaf.write_text("#!/bin/sh\nexec sleep 600\n")  # takes mpv's options, reads nothing
    deaf.chmod(0o755)
    client, events, out = player(crossfade_sec=0, playlist_loop=True, player_command=str(deaf), stall_timeout_sec=3)
    add_track(client.cache, A, tone(440, 30))
    client.request("play", {"track_id": A})
    audio_player = mpv_of(client)
    ended = events.wait_event("playback_end", track_id=A, reason="error", timeout=60)
    assert ended["code"] == "PLAYBACK_FAILED" and "stopped responding" in ended["message"]
    events.wait_for(lambda evs: not _alive(audio_player), timeout=30)  # re-checked on each event: heartbeats come
    assert not _alive(audio_player)


def _alive(pid: int) -> bool:
    """Running or stopped; a zombie (dead, waiting to be reaped) is not alive."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def test_a_long_play_list_is_refused_and_a_repeated_track_is_held_once(player) -> None:
    """Issue 23 item 8: a list past the cap is INVALID_PARAMS; one id repeated is decoded once (the player's memory
    does not grow with the repeats)."""
    client, events, out = player(crossfade_sec=0, playlist_loop=False, player_command="mpv --no-config --really-quiet --no-video --ao=null")
    add_track(client.cache, A, tone(440, 30))
    with pytest.raises(LofiError) as err:
        client.request("play", {"track_ids": [A] * 201})
    assert err.value.code == "INVALID_PARAMS" and "200" in err.value.message
    client.request("play", {"track_ids": [A]})
    events.wait_event("playback_state", track_id=A, state="playing")
    rss_one = _rss(client._playback._link.pid)
    client.request("playlist_add", {"track_ids": [A] * 150})
    events.wait_event("playback_state", playlist_length=151)
    # 150 more decoded copies of 30 s at 48 kHz stereo float would be 1.7 GB; shared, the growth is the bookkeeping
    assert _rss(client._playback._link.pid) - rss_one < 100e6
    with pytest.raises(LofiError) as err:
        client.request("playlist_add", {"track_ids": [A] * 50})
    assert err.value.code == "INVALID_PARAMS"


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
