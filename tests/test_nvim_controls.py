"""Issue 20 in a real headless Neovim: a player users trust. Every control says what it did, the view of what plays
is the service's, setup() changes the player live, and autoplay queues. The player is the real one writing to a file;
every wait is on an event or a state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from nvim_session import quit_nvim

from test_nvim_player import GENERATE, editor, notes, start, wait_event, wait_for_lua  # noqa: F401  (editor: a fixture)



def test_replaying_the_track_that_plays_keeps_it_shown_and_stop_stops_it(editor) -> None:
    """Item 1: :LofiPlay <id> on the track playing; the statusline keeps it, and :LofiStop says it stopped it."""
    nvim, out = editor(player={"cmd": ["mpv", "--no-config", "--really-quiet", "--no-video", "--ao=null"], "loop": True})
    track = nvim.exec_lua(GENERATE, {"prompt": "again and again", "duration_sec": 5, "seed": 1})
    nvim.command(f"LofiPlay {track['track_id']}")
    wait_event(nvim, "playback_start", {"track_id": track["track_id"]})
    nvim.command(f"LofiPlay {track['track_id']}")
    wait_event(nvim, "playback_end", {"track_id": track["track_id"], "reason": "skipped"})
    wait_for_lua(nvim, "require('lofi').statusline() == '▶ again and again'")
    nvim.exec_lua("_G.notes = {}")
    nvim.command("LofiStop")
    assert notes(nvim)[0].startswith("lofi: stopped ") and '"again and again"' in notes(nvim)[0]
    wait_for_lua(nvim, "require('lofi').statusline() == ''")


def test_every_control_says_what_it_did(editor) -> None:
    """Item 2: pause, resume, toggle, skip and volume answer; a volume cut at 0 says so; with nothing playing, says that."""
    nvim, out = editor(player={"cmd": ["mpv", "--no-config", "--really-quiet", "--no-video", "--ao=null"], "loop": True, "volume": 50})
    nvim.exec_lua("_G.notes = {}")
    nvim.command("LofiPause")
    assert notes(nvim) == ["lofi: nothing is playing"]
    track = nvim.exec_lua(GENERATE, {"prompt": "rainy piano", "duration_sec": 5, "seed": 2})
    nvim.command("LofiPlay")
    wait_event(nvim, "playback_start", {"track_id": track["track_id"]})
    nvim.exec_lua("_G.notes = {}")
    for command in ("LofiPause", "LofiResume", "LofiToggle", "LofiToggle", "LofiVolume 40", "LofiVolume +10", "LofiVolume -80", "LofiSkip"):
        nvim.command(command)
    said = notes(nvim)
    described = f'{track["track_id"]} "rainy piano" (5s, musicgen)'
    assert said == [
        f"lofi: paused {described}", f"lofi: playing {described}", f"lofi: paused {described}", f"lofi: playing {described}",
        "lofi: volume 40", "lofi: volume 50", "lofi: volume 0 (the lowest)", f"lofi: skipped {described}",
    ], said


def test_seek_shuffle_and_now_playing(editor) -> None:
    """Item 8: :LofiSeek 1:20 / +30 / -10, :LofiShuffle, :LofiNow; the statusline's position and volume when asked."""
    nvim, out = editor(player={"cmd": ["mpv", "--no-config", "--really-quiet", "--no-video", "--ao=null"], "loop": True, "volume": 70})
    a = nvim.exec_lua(GENERATE, {"prompt": "long walk", "duration_sec": 60, "seed": 3})
    b = nvim.exec_lua(GENERATE, {"prompt": "short walk", "duration_sec": 5, "seed": 4})
    nvim.exec_lua("assert(require('lofi').play({...}))", a["track_id"], b["track_id"])
    wait_event(nvim, "playback_start", {"track_id": a["track_id"]})
    nvim.exec_lua("_G.notes = {}")
    nvim.command("LofiSeek 0:40")
    nvim.command("LofiSeek +30")
    nvim.command("LofiSeek -10")
    said = notes(nvim)
    assert said[0].startswith("lofi: 0:40 of 1:00, ") and "long walk" in said[0], said
    assert said[1].startswith("lofi: 1:00 of 1:00, "), said  # clamped to the track
    assert said[2].startswith("lofi: 0:"), said
    nvim.exec_lua("_G.notes = {}")
    nvim.command("LofiShuffle")
    nvim.command("LofiShuffle off")
    nvim.command("LofiNow")
    said = notes(nvim)
    assert said[:2] == ["lofi: shuffle on", "lofi: shuffle off"], said
    assert said[2].startswith("lofi: ▶ ") and "long walk" in said[2] and " / 1:00, volume 70" in said[2], said
    line = nvim.exec_lua("return require('lofi').statusline({position = true, volume = true})")
    assert line.startswith("▶ long walk ") and "/1:00 vol 70" in line, line
    nvim.command("set statusline=%{v:lua.require'lofi'.statusline('position\\ volume')}")  # words: no braces in %{}
    assert nvim.exec_lua("return vim.api.nvim_eval_statusline(vim.o.statusline, {}).str").startswith("▶ long walk ")
    nvim.exec_lua("_G.notes = {}")
    nvim.command("LofiSeek soon")
    assert "seek to a time like 1:20" in notes(nvim)[0]


def test_setup_with_another_volume_changes_it_live_without_reloading_the_model(editor) -> None:
    """Item 4: setup() again with only player.volume (or crossfade) changed: the next job does not restart the engine
    (no model load), and the volume reaches the playing player."""
    nvim, out = editor(player={"cmd": ["mpv", "--no-config", "--really-quiet", "--no-video", "--ao=null"], "loop": True})
    track = nvim.exec_lua(GENERATE, {"prompt": "first", "duration_sec": 5, "seed": 5})
    nvim.exec_lua("assert(require('lofi').play(...))", track)
    wait_event(nvim, "playback_start", {"track_id": track["track_id"]})
    engine = nvim.exec_lua("return require('lofi').status().engine.engine_pid")
    nvim.exec_lua(
        "local o = vim.deepcopy(require('lofi.core.config').options); o.player.volume = 30; o.player.crossfade_sec = 1; require('lofi').setup(o)"
    )
    wait_for_lua(nvim, "require('lofi').now_playing().volume == 30")
    nvim.exec_lua("_G.loads = 0; require('lofi').on('model_load_progress', function() _G.loads = _G.loads + 1 end)")
    nvim.exec_lua(GENERATE, {"prompt": "second", "duration_sec": 5, "seed": 6})
    assert nvim.exec_lua("return _G.loads") == 0
    assert nvim.exec_lua("return require('lofi').status().engine.engine_pid") == engine


def test_autoplay_queues_a_new_track_after_the_one_playing(editor) -> None:
    """Item 7: a finished generation does not cut the track playing; it follows it."""
    nvim, out = editor(autoplay=True, player={"cmd": ["mpv", "--no-config", "--really-quiet", "--no-video", "--ao=null"], "loop": False})
    first = nvim.exec_lua(GENERATE, {"prompt": "playing now", "duration_sec": 5, "seed": 7})
    wait_event(nvim, "playback_start", {"track_id": first["track_id"]})
    second = nvim.exec_lua(GENERATE, {"prompt": "made meanwhile", "duration_sec": 5, "seed": 8})
    wait_for_lua(nvim, "#(require('lofi').playlist.list() or {}) == 2")
    assert [t["track_id"] for t in nvim.exec_lua("return require('lofi').playlist.list()")] == [first["track_id"], second["track_id"]]
    ended = wait_event(nvim, "playback_end", {"track_id": first["track_id"]}, timeout=30)
    assert ended["data"]["reason"] == "finished"  # played to its end, not cut
    wait_event(nvim, "playback_start", {"track_id": second["track_id"]}, timeout=30)


def test_checkhealth_counts_one_track_and_lofilog_opens_the_three_logs(editor) -> None:
    """The smaller items: ":checkhealth" says "1 track"; :LofiLog opens the plugin's, engine's and player's logs."""
    nvim, out = editor(player={"cmd": ["mpv", "--no-config", "--really-quiet", "--no-video", "--ao=null"], "loop": False})
    track = nvim.exec_lua(GENERATE, {"prompt": "one", "duration_sec": 5, "seed": 9})
    nvim.exec_lua("assert(require('lofi').play(...))", track)
    wait_event(nvim, "playback_start", {"track_id": track["track_id"]})  # the player process has logged its start
    nvim.command("checkhealth lofi")
    health = "\n".join(nvim.current.buffer[:])
    assert "writable: 1 track, " in health, health
    logs = next(line for line in health.splitlines() if "logs (:LofiLog)" in line)
    assert all(name in logs for name in ("plugin.log", "engine.log", "player.log")), logs
    nvim.command("LofiLog")
    opened = nvim.exec_lua("return vim.tbl_map(function(w) return vim.fs.basename(vim.api.nvim_buf_get_name(vim.api.nvim_win_get_buf(w))) end, vim.api.nvim_tabpage_list_wins(0))")
    assert sorted(opened) == ["engine.log", "player.log", "plugin.log"], opened


def test_an_unwritable_state_folder_is_said_once_and_lofilog_opens_the_moved_logs(tmp_path: Path, monkeypatch) -> None:
    """Issue 23 item 9 in the editor: with Neovim's state folder unwritable (here a file where the folder should
    be), tracks are still made and played; one warning says where the logs went, and :LofiLog opens them there."""
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "state").write_text("not a folder")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    nvim, out = start(tmp_path, monkeypatch, player={"cmd": ["mpv", "--no-config", "--really-quiet", "--no-video", "--ao=null"], "loop": False})
    try:
        track = nvim.exec_lua(GENERATE, {"prompt": "one", "duration_sec": 5, "seed": 9})
        nvim.exec_lua("assert(require('lofi').play(...))", track)
        wait_event(nvim, "playback_start", {"track_id": track["track_id"]})
        moved = tmp_path / "tmp" / f"lofi.nvim-{os.getuid()}"
        warnings = [n for n in notes(nvim) if "WRITE_FAILED" in n]
        assert len(warnings) == 1 and str(tmp_path / "home" / "state" / "nvim" / "lofi") in warnings[0] and str(moved) in warnings[0], notes(nvim)
        nvim.command("checkhealth lofi")
        health = "\n".join(nvim.current.buffer[:])
        assert "WARNING cannot write logs in" in health and str(moved / "plugin.log") in health, health
        nvim.command("LofiLog")
        opened = nvim.exec_lua("return vim.tbl_map(function(w) return vim.api.nvim_buf_get_name(vim.api.nvim_win_get_buf(w)) end, vim.api.nvim_tabpage_list_wins(0))")
        assert sorted(opened) == [str(moved / name) for name in ("engine.log", "player.log", "plugin.log")], opened
    finally:
        quit_nvim(nvim)


def test_lofigenerate_with_autoplay_plays_the_piece_as_it_is_composed(editor, tmp_path: Path) -> None:
    """Issue 19 item 2 in the editor: autoplay asks the service to play the piece while it is composed (generate's
    play: true); what the player writes is the finished track, sample for sample."""
    import numpy as np
    import soundfile

    from lofi_engine.playback.audio import to_mixer_rate
    from test_nvim_player import pcm_command

    out = tmp_path / "out.wav"
    nvim, _ = editor(autoplay=True, player={"cmd": pcm_command(out), "loop": False})
    nvim.exec_lua("_G.completed = nil; require('lofi').on('generation_complete', function(d) _G.completed = d end)")
    nvim.command("LofiGenerate rain on a window duration=10 seed=3")
    track = wait_event(nvim, "generation_complete", timeout=120)["data"]
    wait_event(nvim, "playback_end", {"track_id": track["track_id"], "reason": "finished"}, timeout=60)
    starts = nvim.exec_lua("return _G.count('playback_start', ...)", {"track_id": track["track_id"]})
    assert starts == 1  # played once, while composed: not again when finished
    audio, rate = soundfile.read(track["path"], dtype="float32", always_2d=True)
    expected = to_mixer_rate(np.repeat(audio, 2, axis=1), rate)
    heard = soundfile.read(str(out), dtype="float32", always_2d=True)[0]
    np.testing.assert_allclose(heard[: len(expected)], expected, atol=1e-4, rtol=0)


def test_lofigenerate_takes_tempo_key_and_time_signature_and_lofitracks_shows_them(editor) -> None:
    """Issue 21 item 4 in the editor: `bpm=80 key="C minor" time_signature=3` on :LofiGenerate reach the engine,
    come back with the track, show in :LofiTracks' line; a bad one is refused with its range."""
    nvim, out = editor(player={"cmd": ["mpv", "--no-config", "--really-quiet", "--no-video", "--ao=null"], "loop": False})
    nvim.command('LofiGenerate night drive bpm=80 key="c minor" time_signature=3 duration=5 seed=3')
    done = wait_event(nvim, "generation_complete")["data"]
    assert done["prompt"] == "night drive" and (done["bpm"], done["key"], done["time_signature"]) == (80, "C minor", 3), done
    line = nvim.exec_lua("local tracks = require('lofi').tracks(); return require('lofi.ui.pickers').track_line(tracks[1])")
    assert line.startswith("night drive  5s  musicgen  80 bpm  C minor  3/4  seed 3  "), line
    nvim.exec_lua("_G.notes = {}")
    nvim.command("LofiGenerate night drive bpm=500")
    said = notes(nvim)
    assert len(said) == 1 and "INVALID_PARAMS: bpm must be a whole number from 30 to 300" in said[0], said


def test_lofi_continue_continues_a_track_or_a_file_and_the_picker_offers_it(editor, tmp_path: Path) -> None:
    """Issue 21 items 2-3 in the editor: :LofiContinue <track> keeps its prompt, :LofiContinue <file> <prompt> takes a
    file; each new track is its source followed by the new music; the picker's "continue it" does the same."""
    import numpy as np
    import soundfile
    from conftest import TINY

    fixtures = Path(__file__).parent / "fixtures"
    nvim, out = editor(model={"dir": str(TINY), "encodec_dir": str(fixtures / "encodec-tiny")})
    nvim.exec_lua("_G.notes = {}")
    nvim.command("LofiContinue")
    assert notes(nvim) == ["lofi: INVALID_PARAMS: nothing to continue: give a file or a track (:LofiContinue <Tab>), or play one"], notes(nvim)
    track = nvim.exec_lua(GENERATE, {"prompt": "dawn", "duration_sec": 5, "seed": 1})
    nvim.command(f"LofiContinue {track['track_id']} duration=5 seed=2")
    done = wait_event(nvim, "generation_complete", {"continue_from": track["track_id"]})["data"]
    assert done["prompt"] == "dawn" and done["duration_sec"] == 10.0, done
    tone = np.load(fixtures / "musicgen-tiny-reference" / "encodec.npz")["tone_1s_audio"].astype(np.float32)
    soundfile.write(tmp_path / "mine.wav", tone, 32000, subtype="FLOAT")
    nvim.command(f"LofiContinue {tmp_path / 'mine.wav'} night walk duration=5")
    done = wait_event(nvim, "generation_complete", {"continue_from": str(tmp_path / "mine.wav")})["data"]
    assert done["prompt"] == "night walk" and done["duration_sec"] == 6.0, done
    np.testing.assert_allclose(soundfile.read(done["path"], dtype="float32")[0][:16000], tone[:16000], atol=1e-4)  # as 16-bit samples
    nvim.exec_lua("_G.notes = {}")
    nvim.command(f"LofiContinue {tmp_path / 'nope.wav'} nice")  # a path that is not there: said, not taken for a prompt
    assert notes(nvim) == [f"lofi: INVALID_AUDIO: {tmp_path / 'nope.wav'}: No such file or directory"], notes(nvim)
    first = nvim.exec_lua("return require('lofi').tracks()[1]")  # what the picker lists first
    nvim.exec_lua("""
      local answers = {1, 5}
      vim.ui.select = function(items, opts, choice) choice(items[table.remove(answers, 1)]) end
      vim.cmd('LofiTracks')
    """)
    done = wait_event(nvim, "generation_complete", {"continue_from": first["track_id"]})["data"]
    assert done["prompt"] == first["prompt"] and done["duration_sec"] == first["duration_sec"] + 30, done  # the default 30 s more


def test_lofi_radio_from_a_file_or_a_track(editor, tmp_path: Path) -> None:
    """Issue 21 item 3 in the editor: :LofiRadio from=<file> <prompt> goes on from the file (a relative path is the
    editor's, not the service's); radio({from = track}) takes the track's prompt; the statusline shows the radio."""
    import numpy as np
    import soundfile
    from conftest import TINY

    fixtures = Path(__file__).parent / "fixtures"
    nvim, out = editor(model={"dir": str(TINY), "encodec_dir": str(fixtures / "encodec-tiny")},
                       player={"cmd": ["mpv", "--no-config", "--really-quiet", "--no-video", "--ao=null"]})
    soundfile.write(tmp_path / "mine.wav", 0.3 * np.sin(np.arange(64000) * 0.05).astype(np.float32), 32000)
    nvim.command(f"cd {tmp_path}")
    nvim.exec_lua("_G.notes = {}")
    nvim.command("LofiRadio from=mine.wav night walk seed=4")
    state = wait_event(nvim, "radio_state", {"active": True})["data"]
    assert state["from"] == str(tmp_path / "mine.wav") and state["prompt"] == "night walk", state
    wait_event(nvim, "radio_segment", {"stream_id": state["stream_id"]})
    wait_for_lua(nvim, "require('lofi').statusline():find('radio') ~= nil")
    assert notes(nvim) == ['lofi: radio continue "night walk"'], notes(nvim)
    nvim.command("LofiRadio stop")
    track = nvim.exec_lua(GENERATE, {"prompt": "dawn", "duration_sec": 5, "seed": 1})
    state = nvim.exec_lua("return require('lofi').radio({from = ...})", track["track_id"])
    assert state["prompt"] == "dawn" and state["from"] == track["track_id"], state
    wait_event(nvim, "radio_segment", {"stream_id": state["stream_id"]})
    nvim.exec_lua("_G.notes = {}")
    nvim.command("LofiRadio from=nope.wav night")
    assert notes(nvim) == [f"lofi: INVALID_AUDIO: {tmp_path / 'nope.wav'}: No such file or directory"], notes(nvim)
    completions = nvim.exec_lua("return vim.fn.getcompletion('LofiRadio from=mi', 'cmdline')")
    assert completions == ["from=mine.wav"], completions
