"""Issue 13 from the editor, in a real headless Neovim: the radio, the service's player, the track library, the
statusline and the keymaps. The player is the real one (the service's player process feeding mpv), its audio written
to a PCM file (mpv --ao=pcm) that the tests read back. Every wait is on an event or a state, never a bare sleep."""

from __future__ import annotations

import os
import re
import shlex
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import TINY
from nvim_session import quit_nvim, start_nvim
from lofi_engine.dev.processes import descendants, pid_alive
from test_nvim_schema import setup_error

pytestmark = pytest.mark.skipif(
    not any(os.access(os.path.join(d, "mpv"), os.X_OK) for d in os.environ["PATH"].split(os.pathsep)), reason="mpv is installed by `make test`"
)

# Every playback, radio and generation event, with the time it reached Lua; `wait_event` waits for one.
RECORDER = """
_G.seen = {}
local names = {'playback_start', 'playback_pause', 'playback_resume', 'playback_end', 'radio_state', 'radio_segment',
               'radio_error', 'generation_start', 'generation_progress', 'generation_complete', 'generation_error'}
for _, name in ipairs(names) do
  require('lofi').on(name, function(d)
    table.insert(_G.seen, {name = name, data = d, t = vim.uv.hrtime() / 1e9, statusline = require('lofi').statusline()})
  end)
end
local function matches(e, name, match)
  if e.name ~= name then return false end
  for k, v in pairs(match or {}) do
    if e.data[k] ~= v then return false end
  end
  return true
end
-- the nth event `name` whose fields hold `match`, counting from event number `from` (1-based)
_G.wait_event = function(name, match, nth, timeout, from)
  local found
  vim.wait(timeout or 60000, function()
    local n = 0
    for i = from or 1, #_G.seen do
      if matches(_G.seen[i], name, match) then
        n = n + 1
        if n >= (nth or 1) then found = _G.seen[i]; return true end
      end
    end
    return false
  end, 5)
  return found
end
_G.count = function(name, match)
  local n = 0
  for _, e in ipairs(_G.seen) do if matches(e, name, match) then n = n + 1 end end
  return n
end
"""

GENERATE = """
local done
require('lofi').generate(..., function(err, track) done = {err = err, track = track} end)
vim.wait(60000, function() return done ~= nil end, 5)
assert(done and not done.err, vim.inspect(done))
return done.track
"""


def pcm_command(out: Path) -> list[str]:
    return ["mpv", "--no-config", "--really-quiet", "--no-video", "--ao=pcm", f"--ao-pcm-file={out}", "--ao-pcm-waveheader=yes"]


def start(tmp_path: Path, monkeypatch, **options):
    """A Neovim with lofi on the tiny model, the radio's windows 6 s with 2 s of context, the player writing to a
    PCM file; notifications captured in _G.notes."""
    out = tmp_path / "out.wav"
    nvim = start_nvim(tmp_path / "home", monkeypatch.setenv)
    settings = {
        "model": {"dir": str(TINY)}, "cache": {"dir": str(tmp_path / "cache")}, "autoplay": False,
        "player": {"cmd": pcm_command(out)}, "radio": {"window_sec": 6, "context_sec": 2}, **options,
    }
    nvim.exec_lua("require('lofi').setup(...)", settings)
    nvim.exec_lua("_G.notes = {}; vim.notify = function(msg, level) table.insert(_G.notes, {msg = msg, level = level}) end")
    nvim.exec_lua(RECORDER)
    return nvim, out


@pytest.fixture
def editor(tmp_path: Path, monkeypatch):
    made = []

    def make(**options):
        nvim, out = start(tmp_path, monkeypatch, **options)
        made.append(nvim)
        return nvim, out

    yield make
    for nvim in made:
        quit_nvim(nvim)


def wait_event(nvim, name: str, match: dict | None = None, nth: int = 1, timeout: float = 60, after: int = 0) -> dict:
    found = nvim.exec_lua("return _G.wait_event(...)", name, match or {}, nth, int(timeout * 1000), after + 1)
    assert found, f"no {name} {match or ''} (nth {nth}) within {timeout} s; seen: {[e['name'] for e in seen(nvim)]}"
    return found


def seen(nvim) -> list[dict]:
    return nvim.exec_lua("return _G.seen")


def notes(nvim) -> list[str]:
    return [n["msg"] for n in nvim.exec_lua("return _G.notes")]


def wait_for_lua(nvim, condition: str, timeout: float = 10):
    """Wait (inside Neovim, its loop running) until the Lua expression is true; returns its value."""
    value = nvim.exec_lua(f"local v; vim.wait({int(timeout * 1000)}, function() v = ({condition}); return v end, 5); return v")
    assert value, f"{condition} never became true"
    return value


def mpv_pids(root: int) -> list[int]:
    return [pid for pid, argv in descendants(root).items() if argv and os.path.basename(argv[0]) == "mpv"]


def longest_silence(audio: np.ndarray) -> int:
    quiet = np.abs(audio).max(axis=1) < 1e-5
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0


# ---- the radio ---------------------------------------------------------------------------------------------------


def test_lofiradio_plays_continuously_survives_the_controls_and_stops_cleanly(editor) -> None:
    nvim, out = editor()
    nvim.exec_lua("require('lofi').queue()")  # the python3 host is up: its start is not the radio's
    nvim_pid = nvim.exec_lua("return vim.fn.getpid()")
    t0 = nvim.exec_lua("local t = vim.uv.hrtime() / 1e9; vim.cmd('LofiRadio lofi hip hop'); return t")
    first = wait_event(nvim, "playback_start", {"radio": True}, timeout=120)
    first_sound = first["t"] - t0
    print(f"time from :LofiRadio to the first sound (playback_start of the first segment): {first_sound:.2f} s")
    assert first["data"]["prompt"] == "lofi hip hop"
    stream = first["data"]["track_id"].rsplit("-", 1)[0]
    wait_event(nvim, "radio_state", {"mode": "live"})  # the tiny model composes faster than it plays
    wait_for_lua(nvim, "require('lofi').statusline() == '▶ radio live: lofi hip hop'")
    assert [n for n in notes(nvim) if "radio" in n] == ['lofi: radio continue "lofi hip hop"'], notes(nvim)

    # across windows: the second segment follows the first
    wait_event(nvim, "playback_start", {"track_id": f"{stream}-000001"}, timeout=60)

    # pause: the output stops advancing; resume: it goes on
    nvim.command("LofiPause")
    paused = wait_event(nvim, "playback_pause")
    assert paused["statusline"].startswith("⏸ radio live: lofi hip hop")
    nvim.exec_lua("vim.wait(300)")  # what mpv held is written
    size = out.stat().st_size
    nvim.exec_lua("vim.wait(600)")
    assert out.stat().st_size == size, "nothing plays while paused"
    status = nvim.exec_lua("return require('lofi').status()")
    assert status["playback"]["state"] == "paused" and status["radio"]["mode"] == "live" and status["radio"]["active"]
    nvim.command("LofiToggle")
    wait_event(nvim, "playback_resume")
    wait_for_lua(nvim, f"vim.fn.getfsize({str(out)!r}) > {size}")

    # volume
    nvim.command("LofiVolume 40")
    wait_for_lua(nvim, "(require('lofi').status().playback or {}).volume == 40")
    nvim.command("LofiVolume +20")
    assert wait_for_lua(nvim, "(require('lofi').status().playback or {}).volume == 60")

    # skip: the segment playing ends (skipped) and another starts; the music goes on after it
    heard_before = nvim.exec_lua("return require('lofi.state.player').current.track_id")
    mark = len(seen(nvim))
    nvim.command("LofiSkip")
    skipped = wait_event(nvim, "playback_end", {"reason": "skipped"}, after=mark)
    assert skipped["data"]["track_id"] == heard_before
    wait_event(nvim, "playback_start", {"radio": True}, after=mark)
    # a new prompt steers the radio that plays (no restart): the next windows follow it, and the first new music
    # heard after the segment playing is the steered one (issue 20 item 3: the segments made ahead are dropped)
    mark = len(seen(nvim))
    nvim.command("LofiRadio rainy jazz piano")
    steered = wait_event(nvim, "radio_segment", {"prompt": "rainy jazz piano"}, timeout=60)
    assert steered["data"]["stream_id"] == stream
    heard = wait_event(nvim, "playback_start", {"prompt": "rainy jazz piano"}, timeout=60)
    events = seen(nvim)
    before = {e["data"]["track_id"] for e in events[:mark] if e["name"] == "playback_start"}
    after = [e["data"]["track_id"] for e in events[mark:] if e["name"] == "playback_start"]
    first_new = next(t for t in after if t not in before)  # a repeat of what was heard (rotation) is not new music
    assert first_new == heard["data"]["track_id"], (after, heard)
    assert nvim.exec_lua("return _G.count('radio_state', {mode = 'starting'})") == 1, "steering did not restart it"
    assert nvim.exec_lua("return _G.count('playback_start', {radio = true})") >= 4

    # stop: music and generation end; no mpv is left, the engine has nothing queued or running
    assert mpv_pids(nvim_pid), "mpv plays while the radio runs"
    nvim.command("LofiRadio stop")
    wait_event(nvim, "radio_state", {"active": False})
    wait_event(nvim, "playback_end", {"reason": "stopped"}, timeout=30)
    assert nvim.exec_lua("return require('lofi').statusline()") == ""
    deadline = time.monotonic() + 10
    while mpv_pids(nvim_pid) and time.monotonic() < deadline:
        nvim.exec_lua("vim.wait(50)")
    assert not mpv_pids(nvim_pid), "mpv exits when the radio stops"
    queue = nvim.exec_lua("return require('lofi').queue()")
    assert queue.get("running") is None and not queue["pending"]
    assert nvim.exec_lua("return require('lofi').radio_status()")["active"] is False
    assert not [e for e in seen(nvim) if e["name"] in ("radio_error", "generation_error") and e["data"]["code"] != "CANCELLED"]

    # what was heard: one stream, no gap (pause holds it, skip crossfades) across the windows
    heard, rate = soundfile.read(out, dtype="float32", always_2d=True)
    assert rate == 48000 and len(heard) > 10 * rate
    assert longest_silence(heard[: len(heard) - rate // 2]) < 0.02 * rate  # up to the stop's fade-out
    assert first_sound < 30


def test_radio_from_lua_strategies_steer_and_bad_input(editor) -> None:
    nvim, out = editor(radio={"window_sec": 6, "context_sec": 2, "piece_sec": 5})
    out_lua = nvim.exec_lua(
        """
        local lofi = require('lofi')
        local r = {}
        r.no_prompt = {lofi.radio({})}
        r.bad_strategy = {lofi.radio({prompt = 'x', strategy = 'shuffle'})}
        r.no_presets = {lofi.radio({strategy = 'preset_cycle'})}
        r.steer_idle = {lofi.radio_status()}
        r.started = {lofi.radio({strategy = 'preset_cycle', presets = {'rain', 'night drive'}, seed = 3})}
        return r
        """
    )
    assert out_lua["no_prompt"][1]["code"] == "INVALID_PROMPT"
    assert out_lua["bad_strategy"][1]["code"] == "INVALID_PARAMS" and "shuffle" in out_lua["bad_strategy"][1]["message"]
    assert out_lua["no_presets"][1]["code"] == "INVALID_PARAMS" and "presets" in out_lua["no_presets"][1]["message"]
    assert out_lua["steer_idle"][0]["active"] is False
    started = out_lua["started"][0]
    assert started["active"] and started["strategy"] == "preset_cycle" and started["prompt"] == "rain"
    first = wait_event(nvim, "playback_start", timeout=120)
    second = wait_event(nvim, "playback_start", {"prompt": "night drive"}, timeout=120)
    assert first["data"]["prompt"] == "rain" and second["data"]["track_id"] != first["data"]["track_id"]
    # the radio's pieces are neither announced nor autoplayed as tracks of their own
    assert not [n for n in notes(nvim) if n.startswith("lofi: ready") or n.startswith("lofi: generating")], notes(nvim)
    stopped = nvim.exec_lua("return {require('lofi').stop()}")
    assert stopped[0].get("radio") is True or stopped[0]["prompt"] in ("rain", "night drive")
    wait_event(nvim, "radio_state", {"active": False})
    wait_event(nvim, "playback_end", {"reason": "stopped"}, timeout=30)
    assert nvim.exec_lua("return require('lofi').radio_status().active") is False


# ---- the player and the library from Lua -------------------------------------------------------------------------


def test_every_control_and_cache_method_from_lua_with_bad_input(editor, tmp_path: Path) -> None:
    nvim, out = editor(player={"cmd": pcm_command(tmp_path / "out.wav"), "loop": False, "crossfade_sec": 0.5})
    a = nvim.exec_lua(GENERATE, {"prompt": "first tune", "duration_sec": 10, "seed": 1})
    b = nvim.exec_lua(GENERATE, {"prompt": "second tune", "duration_sec": 5, "seed": 2})
    nvim.exec_lua("_G.notes = {}")
    bad = nvim.exec_lua(
        """
        local lofi = require('lofi')
        local function e(...) local r = {...}; return r[2] end
        return {
          play = e(lofi.play('0123456789abcdef')),
          play_bad = e(lofi.play(42)),
          volume = e(lofi.volume(150)),
          volume_text = e(lofi.volume('loud')),
          add = e(lofi.playlist.add('0123456789abcdef')),
          loop = e(lofi.loop('yes')),
          delete = e(lofi.delete('0123456789abcdef')),
          save = e(lofi.save('0123456789abcdef', ...)),
          save_format = e(lofi.save(lofi.tracks()[1], ..., 'aiff')),
        }
        """,
        str(tmp_path / "x.wav"),
    )
    assert bad["play"]["code"] == "TRACK_NOT_FOUND" and "0123456789abcdef" in bad["play"]["message"]
    assert bad["play_bad"]["code"] == "INVALID_PARAMS"
    assert bad["volume"]["code"] == "INVALID_PARAMS" and "0 to 100" in bad["volume"]["message"] and "150" in bad["volume"]["message"]
    assert bad["volume_text"]["code"] == "INVALID_PARAMS"
    assert bad["add"]["code"] == "TRACK_NOT_FOUND"
    assert bad["loop"]["code"] == "INVALID_PARAMS"
    assert bad["delete"]["code"] == "TRACK_NOT_FOUND"
    assert bad["save"]["code"] == "TRACK_NOT_FOUND"
    assert bad["save_format"]["code"] == "INVALID_PARAMS" and "aiff" in bad["save_format"]["message"]
    assert not notes(nvim), "the Lua API returns errors, it does not notify"
    assert not out.exists(), "nothing bad reached the player"

    # the controls, each confirmed by its event
    assert nvim.exec_lua("return {require('lofi').play(...)}", a["track_id"]) == [True]
    wait_event(nvim, "playback_start", {"track_id": a["track_id"]})
    assert nvim.exec_lua("return require('lofi').statusline()") == "▶ first tune"
    for method, event in (("pause", "playback_pause"), ("resume", "playback_resume"), ("toggle", "playback_pause"), ("toggle", "playback_resume")):
        mark = len(seen(nvim))
        result = nvim.exec_lua(f"return {{require('lofi').{method}()}}")
        assert result[0] and len(result) == 1, (method, result)
        wait_event(nvim, event, {"track_id": a["track_id"]}, after=mark)
        if event == "playback_pause":
            assert nvim.exec_lua("return require('lofi').statusline()") == "⏸ first tune"
    assert nvim.exec_lua("return {require('lofi').volume(50)}")[0]
    wait_for_lua(nvim, "(require('lofi').status().playing or {}).volume == 50")
    status = nvim.exec_lua("return require('lofi').status()")
    assert status["playing"]["track_id"] == a["track_id"] and status["playing"]["prompt"] == "first tune"
    assert status["playing"]["state"] == "playing" and status["playing"]["position_sec"] >= 0
    assert status["playback"]["loop"] is False and status["playback"]["crossfade_sec"] == 0.5
    assert status["radio"]["active"] is False

    assert nvim.exec_lua("return {require('lofi').playlist.add(...)}", b["track_id"])[0]
    wait_for_lua(nvim, "#(require('lofi').playlist.list() or {}) == 2")
    listed = nvim.exec_lua("return require('lofi').playlist.list()")
    assert [(t["track_id"], t["prompt"]) for t in listed] == [(a["track_id"], "first tune"), (b["track_id"], "second tune")]
    mark = len(seen(nvim))
    assert nvim.exec_lua("return {require('lofi').skip()}")[0]
    assert wait_event(nvim, "playback_end", {"track_id": a["track_id"]}, after=mark)["data"]["reason"] == "skipped"
    wait_event(nvim, "playback_start", {"track_id": b["track_id"]}, after=mark)
    assert nvim.exec_lua("return require('lofi').statusline()") == "▶ second tune"
    assert nvim.exec_lua("return {require('lofi').loop(true)}")[0]
    wait_for_lua(nvim, "require('lofi').status().playback.loop == true")
    assert nvim.exec_lua("return {require('lofi').playlist.remove(...)}", a["track_id"])[0]
    wait_for_lua(nvim, "#(require('lofi').playlist.list() or {}) == 1")
    # what plays cannot be deleted
    busy = nvim.exec_lua("return {require('lofi').delete(...)}", b["track_id"])
    assert busy[1]["code"] == "INVALID_PARAMS" and "playing" in busy[1]["message"]
    assert nvim.exec_lua("return {require('lofi').playlist.add({...})}", a["track_id"], a["track_id"])[0]
    wait_for_lua(nvim, "#(require('lofi').playlist.list() or {}) == 3")
    assert nvim.exec_lua("return {require('lofi').playlist.clear()}")[0]  # all but the track playing
    wait_for_lua(nvim, "#(require('lofi').playlist.list() or {}) == 1")
    assert nvim.exec_lua("return require('lofi').playlist.list()[1].track_id") == b["track_id"]
    mark = len(seen(nvim))
    assert nvim.exec_lua("return {require('lofi').stop()}")[0]["track_id"] == b["track_id"]
    wait_event(nvim, "playback_end", {"track_id": b["track_id"], "reason": "stopped"}, after=mark)
    wait_for_lua(nvim, "require('lofi').status().playing == nil")
    assert nvim.exec_lua("return require('lofi').statusline()") == ""

    # the library
    stats = nvim.exec_lua("return require('lofi').stats()")
    assert stats["count"] == 2 and stats["bytes"] > 0 and stats["max_bytes"] > 0 and stats["oldest"] <= stats["newest"]
    assert stats["dir"].startswith(str(tmp_path / "cache"))
    # most recently played first: a was played (b only joined the playlist)
    assert [t["track_id"] for t in nvim.exec_lua("return require('lofi').cache_list()")] == [a["track_id"], b["track_id"]]
    target = tmp_path / "export" / "tune.flac"
    target.parent.mkdir()
    saved = nvim.exec_lua("return {require('lofi').save(...)}", a["track_id"], str(target))
    assert saved[0]["format"] == "flac" and saved[0]["path"] == str(target) and soundfile.info(str(target)).format == "FLAC"
    again = nvim.exec_lua("return {require('lofi').save(...)}", a["track_id"], str(target))
    assert again[1]["code"] == "WRITE_FAILED" and "overwrite" in again[1]["message"]
    assert nvim.exec_lua("local id, path = ...; return {require('lofi').save(id, path, nil, {overwrite = true})}", a["track_id"], str(target))[0]["format"] == "flac"
    as_ogg = nvim.exec_lua("return {require('lofi').save(...)}", a["track_id"], str(tmp_path / "export" / "tune"), "ogg")
    assert as_ogg[0]["path"].endswith("tune.ogg") and soundfile.info(as_ogg[0]["path"]).format == "OGG"
    deleted = nvim.exec_lua("return {require('lofi').delete(...)}", a["track_id"])
    assert deleted[0]["deleted"] == [a["track_id"]]
    cleared = nvim.exec_lua("return {require('lofi').clear()}")
    assert cleared[0]["deleted"] == [b["track_id"]]
    assert nvim.exec_lua("return require('lofi').stats().count") == 0
    assert nvim.exec_lua("return {require('lofi').play()}")[1]["code"] == "TRACK_NOT_FOUND"


def test_commands_report_bad_input_clearly(editor) -> None:
    nvim, out = editor()
    nvim.exec_lua(GENERATE, {"prompt": "command tune", "duration_sec": 5, "seed": 4})
    for command in ("LofiVolume 150", "LofiVolume loud", "LofiPlay no such tune", "LofiSave", "LofiRadio colour=blue", "LofiSave /tmp/x.aiff aiff"):
        nvim.exec_lua("_G.notes = {}")
        try:
            nvim.command(command)
        except Exception as exc:  # a command with arguments it cannot take is refused by Neovim itself
            assert command == "LofiSave" and "E471" in str(exc), exc
            continue
        said = notes(nvim)
        assert len(said) == 1, (command, said)
        expected = {
            "LofiVolume 150": "lofi: INVALID_PARAMS: volume level must be a number from 0 to 100, not 150",
            "LofiVolume loud": "lofi: INVALID_PARAMS: the volume is a number from 0 to 100",
            "LofiPlay no such tune": "lofi: no cached track no such tune",
            "LofiRadio colour=blue": "lofi: INVALID_PARAMS: colour is not an option of :LofiRadio",
            "LofiSave /tmp/x.aiff aiff": "lofi: INVALID_PARAMS: format must be one of wav, flac, ogg, mp3, not 'aiff'",
        }[command]
        assert said[0].startswith(expected), (command, said)
    nvim.exec_lua("_G.notes = {}")
    for command in ("LofiPause", "LofiToggle", "LofiSkip", "LofiStop"):
        nvim.command(command)
    assert notes(nvim) == ["lofi: nothing is playing"] * 4
    assert nvim.call("getcompletion", "LofiRadio s", "cmdline") == ["stop", "strategy=continue", "strategy=same_prompt", "seed="]
    assert nvim.call("getcompletion", "LofiVolume +", "cmdline") == ["+10"]
    assert nvim.call("getcompletion", "LofiSave /tmp/x.flac f", "cmdline") == ["flac"]
    assert not out.exists()


# ---- :LofiTracks -------------------------------------------------------------------------------------------------

PICK = """
-- vim.ui.select answered by _G.answers in turn: a function of the items (returns the one to pick) or an item's text
_G.asked = {}
vim.ui.select = function(items, opts, on_choice)
  local shown = vim.tbl_map(function(item) return opts.format_item and opts.format_item(item) or item end, items)
  table.insert(_G.asked, {prompt = opts.prompt, items = shown})
  local answer = table.remove(_G.answers, 1)
  local choice = nil
  for i, item in ipairs(items) do
    if (type(answer) == 'string' and shown[i]:find(answer, 1, true)) then choice = item; break end
  end
  on_choice(choice)
end
"""


def pick(nvim, *answers: str) -> None:
    """:LofiTracks, answering its questions with the items whose text contains each answer in turn."""
    nvim.exec_lua("_G.answers = {...}", *answers)
    nvim.command("LofiTracks")


def test_lofitracks_lists_plays_adds_regenerates_and_deletes(editor) -> None:
    nvim, out = editor()
    nvim.exec_lua(PICK)
    rain = nvim.exec_lua(GENERATE, {"prompt": "rainy piano", "duration_sec": 5, "seed": 1})
    night = nvim.exec_lua(GENERATE, {"prompt": "night drive synth", "duration_sec": 6, "seed": 2})

    pick(nvim, "rainy piano", "play")
    asked = nvim.exec_lua("return _G.asked")
    assert asked[0]["prompt"] == "lofi tracks"
    assert asked[0]["items"] == [f"night drive synth  6s  musicgen  seed 2  just now  {night['track_id'][:8]}",
                                 f"rainy piano  5s  musicgen  seed 1  just now  {rain['track_id'][:8]}"]
    assert asked[1]["items"] == ["play", "add to playlist", "delete", "regenerate with a new seed", "continue it"]
    wait_event(nvim, "playback_start", {"track_id": rain["track_id"]})
    assert nvim.exec_lua("return require('lofi').statusline()") == "▶ rainy piano"
    assert f'lofi: playing {rain["track_id"]} "rainy piano" (5s, musicgen)' in notes(nvim)

    pick(nvim, "night drive", "add to playlist")
    wait_for_lua(nvim, "#(require('lofi').playlist.list() or {}) == 2")
    assert [t["prompt"] for t in nvim.exec_lua("return require('lofi').playlist.list()")] == ["rainy piano", "night drive synth"]

    # what plays (or waits in the playlist) cannot be deleted: said clearly, and it stays
    nvim.exec_lua("_G.notes = {}")
    pick(nvim, "rainy piano", "delete", "delete")
    wait_for_lua(nvim, "#_G.notes > 0")
    assert len(notes(nvim)) == 1 and notes(nvim)[0].startswith("lofi: INVALID_PARAMS: track ") and "stop it first" in notes(nvim)[0]
    nvim.command("LofiStop")
    wait_event(nvim, "playback_end", {"reason": "stopped"}, timeout=30)
    wait_for_lua(nvim, "require('lofi').status().playing == nil")

    pick(nvim, "night drive", "regenerate with a new seed")
    again = wait_event(nvim, "generation_complete", {"prompt": "night drive synth"}, nth=2)["data"]
    assert again["track_id"] != night["track_id"] and again["seed"] != night["seed"] and again["duration_sec"] == 6
    pick(nvim, "no such prompt")
    lines = nvim.exec_lua("return _G.asked")[-1]["items"]
    takes = [line for line in lines if line.startswith("night drive synth")]
    assert len(takes) == 2 and takes[0] != takes[1]  # issue 20 item 6: two takes of a prompt tell apart (seed, id)

    # deleting asks first: "cancel" keeps the track
    pick(nvim, "rainy piano", "delete", "cancel")
    assert nvim.exec_lua("return _G.asked")[-1]["items"] == ["delete", "cancel"]
    assert rain["track_id"] in [t["track_id"] for t in nvim.exec_lua("return require('lofi').tracks()")]
    nvim.exec_lua("_G.notes = {}")
    pick(nvim, "rainy piano", "delete", "delete")
    wait_for_lua(nvim, "#_G.notes > 0")
    assert f'lofi: deleted {rain["track_id"]} "rainy piano" (5s, musicgen)' in notes(nvim)
    ids = [t["track_id"] for t in nvim.exec_lua("return require('lofi').tracks()")]
    assert rain["track_id"] not in ids and night["track_id"] in ids and again["track_id"] in ids

    # nothing picked: nothing happens
    nvim.exec_lua("_G.notes = {}")
    pick(nvim, "no such prompt")
    assert notes(nvim) == []


def test_lofisave_exports_the_track_playing(editor, tmp_path: Path) -> None:
    nvim, out = editor()
    older = nvim.exec_lua(GENERATE, {"prompt": "save me", "duration_sec": 5, "seed": 1})
    nvim.exec_lua(GENERATE, {"prompt": "newer one", "duration_sec": 5, "seed": 2})
    nvim.command(f"LofiPlay {older['track_id']}")
    wait_event(nvim, "playback_start", {"track_id": older["track_id"]})
    target = tmp_path / "saved.wav"
    nvim.command(f"LofiSave {target} flac")
    said = notes(nvim)[-1]
    assert said == f'lofi: saved {older["track_id"]} "save me" (5s, musicgen) to {target}.flac', said
    info = soundfile.info(f"{target}.flac")
    assert info.format == "FLAC" and abs(info.duration - 5) < 0.01
    nvim.command(f"LofiSave {target}.flac")
    assert "WRITE_FAILED" in notes(nvim)[-1] and "use :LofiSave! to replace it" in notes(nvim)[-1]
    nvim.command(f"LofiSave! {target}.flac")
    assert notes(nvim)[-1].startswith("lofi: saved")
    deeper = tmp_path / "new" / "folder" / "saved.ogg"  # issue 23 item 7: folders are made only when asked
    nvim.command(f"LofiSave {deeper}")
    assert "WRITE_FAILED" in notes(nvim)[-1] and "use :LofiSave ++p to create it" in notes(nvim)[-1]
    assert not (tmp_path / "new").exists()
    nvim.command(f"LofiSave ++p {deeper}")
    assert notes(nvim)[-1].endswith(f"to {deeper}") and soundfile.info(str(deeper)).format == "OGG"


def test_lofisave_refuses_the_radio_instead_of_saving_another_track(editor, tmp_path: Path) -> None:
    """The trial saw :LofiSave save a never-played track while the radio played: the radio is not a track."""
    nvim, out = editor()
    nvim.exec_lua(GENERATE, {"prompt": "not this one", "duration_sec": 5, "seed": 1})
    nvim.command("LofiRadio lofi hip hop")
    wait_for_lua(nvim, "require('lofi.state.player').current and require('lofi.state.player').current.radio", timeout=60)
    nvim.command(f"LofiSave {tmp_path / 'radio.wav'}")
    assert "the radio's stream is not a track of the library" in notes(nvim)[-1]
    assert not (tmp_path / "radio.wav").exists()
    nvim.command("LofiRadio stop")


# ---- autoplay and the statusline -----------------------------------------------------------------------------------


def test_autoplay_plays_a_finished_track_through_the_service_player_and_the_statusline_shows_both(editor) -> None:
    nvim, out = editor(autoplay=True)
    nvim_pid = nvim.exec_lua("return vim.fn.getpid()")
    track = nvim.exec_lua(GENERATE, {"prompt": "autoplayed", "duration_sec": 5, "seed": 7})
    wait_event(nvim, "playback_start", {"track_id": track["track_id"]})
    deadline = time.monotonic() + 10  # the process tree is read from /proc: let it show the player's child
    while not mpv_pids(nvim_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mpv_pids(nvim_pid), ("a real mpv plays it", descendants(nvim_pid), seen(nvim))
    # playing and generating: both on the statusline
    long = nvim.exec_lua("return require('lofi').generate({prompt = 'next one, long', duration_sec = 60, seed = 8})")
    progress = wait_event(nvim, "generation_progress", {"track_id": long["track_id"], "percent": 10}, timeout=60)
    assert re.fullmatch(r"▶ autoplayed · ♪ 10% \d+:\d\d", progress["statusline"]), progress["statusline"]
    nvim.command("LofiPause")
    paused = wait_event(nvim, "playback_pause")
    assert paused["statusline"].startswith("⏸ autoplayed · ♪ "), paused["statusline"]
    nvim.exec_lua("require('lofi').cancel()")
    wait_event(nvim, "generation_error", {"code": "CANCELLED"})
    assert nvim.exec_lua("return require('lofi').statusline()") == "⏸ autoplayed"
    assert nvim.exec_lua("return require('lofi.ui.wording').shorten('a very long prompt that goes on and on and on', 24)") == "a very long prompt that…"


# ---- keymaps -------------------------------------------------------------------------------------------------------


def test_plug_mappings_exist_and_keys_are_mapped_only_when_asked(editor) -> None:
    nvim, out = editor()
    maps = nvim.exec_lua("return vim.tbl_map(function(m) return {lhs = m.lhs, rhs = m.rhs or ''} end, vim.api.nvim_get_keymap('n'))")
    plugs = sorted(m["lhs"] for m in maps if m["lhs"].startswith("<Plug>(lofi-"))
    assert plugs == sorted(
        f"<Plug>(lofi-{n})" for n in ("toggle", "pause", "resume", "skip", "stop", "radio", "volume-up", "volume-down", "tracks", "generate")
    )
    assert not [m for m in maps if "lofi" in (m.get("rhs") or "") and not m["lhs"].startswith("<Plug>")], "no key unless asked"

    setup = {"model": {"dir": str(TINY)}, "cache": {"dir": nvim.exec_lua("return require('lofi.core.config').options.cache.dir")},
             "autoplay": False, "player": {"cmd": pcm_command(out)}}
    nvim.exec_lua("require('lofi').setup(...)", {**setup, "keymaps": {"toggle": ",p", "volume_up": ",+", "volume_down": ",-", "skip": False}})
    assert nvim.call("maparg", ",p", "n") == "<Plug>(lofi-toggle)"
    assert nvim.call("maparg", ",+", "n") == "<Plug>(lofi-volume-up)"
    track = nvim.exec_lua(GENERATE, {"prompt": "keyed", "duration_sec": 5, "seed": 1})
    nvim.exec_lua("assert(require('lofi').play(...))", track["track_id"])
    wait_event(nvim, "playback_start", {"track_id": track["track_id"]})
    nvim.exec_lua("require('lofi').volume(50)")
    nvim.input(",+")
    wait_for_lua(nvim, "(require('lofi').status().playing or {}).volume == 60")
    nvim.input(",-,-")
    wait_for_lua(nvim, "(require('lofi').status().playing or {}).volume == 40")
    nvim.input(",p")
    wait_event(nvim, "playback_pause")
    nvim.input(",p")
    wait_event(nvim, "playback_resume")
    # setup() again without keymaps takes its keys away
    nvim.exec_lua("require('lofi').setup(...)", setup)
    assert nvim.call("maparg", ",p", "n") == "" and nvim.call("maparg", ",+", "n") == ""
    assert 'did you mean "keymaps.toggle"?' in setup_error(nvim, {"keymaps": {"toggel": ",p"}})


# ---- options -------------------------------------------------------------------------------------------------------


def test_player_and_radio_options_become_the_engines_settings(editor) -> None:
    nvim, out = editor()
    cmd = ["/opt/my mpv/mpv", "--ao-pcm-file=/tmp/it's here.wav", "--volume-max=100", "$HOME", "a;b", ""]
    settings = nvim.exec_lua(
        """
        require('lofi').setup({player = {cmd = ..., loop = false, crossfade_sec = 0.5, volume = 70},
                               radio = {window_sec = 8, context_sec = 3, piece_sec = 20}})
        return require('lofi.core.config').remote_settings().engine
        """,
        cmd,
    )
    assert shlex.split(settings["player_command"]) == cmd, settings["player_command"]
    assert (settings["playlist_loop"], settings["crossfade_sec"], settings["volume"]) == (False, 0.5, 70)
    assert (settings["radio_window_sec"], settings["radio_context_sec"], settings["radio_piece_sec"]) == (8, 3, 20)
    default = nvim.exec_lua("require('lofi').setup({}); return require('lofi.core.config').remote_settings().engine")
    assert default.get("player_command") is None and default["playlist_loop"] is True and default["volume"] == 100
    for options, text in [
        ({"player": {"volume": 150}}, "player.volume"),
        ({"player": {"cmd": "mpv"}}, "player.cmd"),
        ({"player": {"crossfade_sec": -1}}, "player.crossfade_sec"),
        ({"radio": {"window_sec": 6, "context_sec": 6}}, "radio.context_sec"),
        ({"radio": {"piece_sec": 2}}, "radio.piece_sec"),
    ]:
        message = setup_error(nvim, options)
        assert text in message, (options, message)


def test_a_missing_player_is_reported_with_what_to_do(editor) -> None:
    nvim, out = editor(player={"cmd": ["no-such-player", "--flag"]}, autoplay=True)
    track = nvim.exec_lua(GENERATE, {"prompt": "unheard", "duration_sec": 5, "seed": 1})  # composed all the same
    wait_for_lua(nvim, "#_G.notes >= 3")
    errors = [n["msg"] for n in nvim.exec_lua("return _G.notes") if n["level"] == 4]
    assert errors == [f'lofi: PLAYER_UNAVAILABLE: the player no-such-player is not installed: install mpv (or set player.cmd in setup()) to hear tracks — playing {track["track_id"]} "unheard" (5s, musicgen)'], errors
    result = nvim.exec_lua("return {require('lofi').play()}")
    assert result[0] is False and result[1]["code"] == "PLAYER_UNAVAILABLE"


# ---- quitting ------------------------------------------------------------------------------------------------------


def test_quitting_while_the_radio_plays_leaves_no_process(tmp_path: Path, monkeypatch) -> None:
    nvim, out = start(tmp_path, monkeypatch)
    nvim_pid = nvim.exec_lua("return vim.fn.getpid()")
    nvim.command("LofiRadio lofi hip hop")
    wait_event(nvim, "playback_start", {"radio": True}, timeout=120)
    children = descendants(nvim_pid)
    assert mpv_pids(nvim_pid) and len(children) >= 4, children  # host, engine, player process, mpv
    quit_nvim(nvim)
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [argv for pid, argv in children.items() if pid_alive(pid)], "every process lofi started ends with Neovim"
