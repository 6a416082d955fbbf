"""The Neovim plugin (issue 4): a real headless Neovim ≥ 0.10, the real remote plugin, the real engine."""

from __future__ import annotations

import os
import time
from pathlib import Path

import soundfile
from conftest import PROMPT, TINY
from lofi_engine.dev.processes import descendants, pid_alive

WAIT_GENERATION = """
local lofi = require('lofi')
local opts, timeout = ...
local got, done, during = {}, nil, false
for _, name in ipairs({'generation_start', 'generation_progress', 'generation_complete', 'generation_error'}) do
  lofi.on(name, function(data) table.insert(got, {name, data}) end)
end
local result, err = lofi.generate(opts, function(e, track) done = {err = e, track = track} end)
local heard_at_return = #got
vim.wait(timeout or 60000, function()
  during = during or lofi.is_generating()
  return done ~= nil
end, 5)
return {result = result, err = err, heard_at_return = heard_at_return, events = got, done = done, during = during, after = lofi.is_generating()}
"""


def test_generate_returns_at_once_then_events_arrive_in_order(nvim) -> None:
    nvim.exec_lua("require('lofi').queue()")  # the python3 host is up (its start, ≈ 0.1 s, is not generate's)
    out = nvim.exec_lua(WAIT_GENERATION, {"prompt": PROMPT, "duration_sec": 5, "seed": 1})
    assert out.get("err") is None, out
    assert out["result"]["status"] == "queued" and out["result"]["seed"] == 1
    assert out["heard_at_return"] == 0  # it returned before the engine began: nothing waits for the engine
    names = [name for name, _ in out["events"]]
    assert names[0] == "generation_start" and names[-1] == "generation_complete"
    percents = [data["percent"] for name, data in out["events"] if name == "generation_progress"]
    assert len(percents) == 20 and percents == sorted(set(percents)) and max(percents) == 99
    track = out["done"]["track"]
    assert out["done"].get("err") is None and track["track_id"] == out["result"]["track_id"]
    assert soundfile.info(track["path"]).frames == 5 * 32000
    assert out["during"] is True and out["after"] is False
    assert nvim.exec_lua("return require('lofi').statusline()") == ""


def test_statusline_shows_progress_while_generating(nvim) -> None:
    lines = nvim.exec_lua(
        """
        local lofi, seen, done = require('lofi'), {}, false
        vim.api.nvim_create_autocmd('User', {pattern = 'LofiProgress', callback = function()
          table.insert(seen, lofi.statusline())
        end})
        lofi.generate({prompt = 'rain', duration_sec = 10, seed = 2}, function() done = true end)
        vim.wait(60000, function() return done end, 5)
        return seen
        """
    )
    shown = [line for line in lines if line]
    assert shown and all(line.startswith("♪ ") for line in shown)
    assert any(line.startswith("♪ 50% ") for line in shown)
    assert lines[-1] == ""


def test_editor_keeps_answering_throughout_a_generation(nvim) -> None:
    """Typing goes on while the engine composes: every keystroke sent during the generation is in the buffer when it
    ends (how fast the editor answers is a figure for a benchmark, not a test on a busy machine)."""
    nvim.exec_lua("_G.done = false; require('lofi').generate({prompt = 'rain', duration_sec = 60, seed = 4}, function() _G.done = true end)")
    samples, finished = 0, False
    while not finished:
        nvim.input("ix<Esc>")
        finished = nvim.eval("luaeval('_G.done')")
        samples += 1
    assert samples > 20, "the generation ended before the editor was asked anything"
    assert nvim.current.buffer[:] == ["x" * samples]


def test_lofigenerate_command_with_arguments(nvim) -> None:
    nvim.exec_lua("_G.completed = nil; require('lofi').on('generation_complete', function(d) _G.completed = d end)")
    nvim.command("LofiGenerate lofi hip hop duration=5 seed=3")
    track = nvim.exec_lua("vim.wait(60000, function() return _G.completed ~= nil end, 10); return _G.completed")
    assert (track["prompt"], track["duration_sec"], track["seed"]) == ("lofi hip hop", 5.0, 3)
    assert nvim.call("getcompletion", "LofiGenerate x pri", "cmdline") == ["priority=high", "priority=normal"]


def test_lofiqueue_lists_jobs_with_high_priority_in_front(nvim) -> None:
    nvim.exec_lua(
        """
        local lofi = require('lofi')
        lofi.generate({prompt = 'long one', duration_sec = 120, seed = 1})
        lofi.generate({prompt = 'second', duration_sec = 5, seed = 1})
        lofi.generate({prompt = 'third', duration_sec = 5, seed = 1})
        lofi.generate({prompt = 'urgent', duration_sec = 5, seed = 1, priority = 'high'})
        """
    )
    nvim.command("LofiQueue")
    lines = nvim.current.buffer[:]
    assert len(lines) == 4
    assert "running" in lines[0] and "long one" in lines[0]
    assert lines[1].lstrip().startswith("1") and "urgent" in lines[1] and "[high]" in lines[1]
    assert "second" in lines[2] and "third" in lines[3]
    assert nvim.current.window.api.get_config()["relative"] == "editor"


def test_queue_full_and_invalid_duration_reach_the_callback_and_the_user(nvim) -> None:
    """From Lua an invalid request is reported once (return value and callback, no notification); the commands
    notify."""
    out = nvim.exec_lua(
        """
        local lofi, errors, returned = require('lofi'), {}, {}
        for i = 1, 12 do
          local _, err = lofi.generate({prompt = 'p' .. i, duration_sec = 30, seed = i}, function(err) if err then table.insert(errors, err.code) end end)
          if err then table.insert(returned, err.code) end
        end
        local bad = nil
        local before = #require('lofi').queue().pending
        local _, bad_returned = lofi.generate({prompt = 'short', duration_sec = 3}, function(err) bad = err end)
        vim.wait(2000, function() return #errors > 0 and bad ~= nil end, 10)
        vim.wait(100)
        local from_lua = vim.deepcopy(_G.notes)
        vim.cmd('LofiGenerate p13 duration=30 seed=13')
        vim.cmd('LofiGenerate short duration=3')
        return {errors = errors, returned = returned, bad = bad, bad_returned = bad_returned, from_lua = from_lua,
                notes = _G.notes, before = before, after = #require('lofi').queue().pending}
        """
    )
    assert out["errors"] == ["QUEUE_FULL"] and out["returned"] == ["QUEUE_FULL"]
    assert out["bad"]["code"] == "INVALID_DURATION" and out["bad_returned"]["code"] == "INVALID_DURATION"
    assert out["before"] == out["after"] == 10
    assert not any("QUEUE_FULL" in n["msg"] or "INVALID_DURATION" in n["msg"] for n in out["from_lua"]), out["from_lua"]
    messages = [n["msg"] for n in out["notes"]]
    assert sum(m.startswith("lofi: QUEUE_FULL: ") for m in messages) == 1, messages
    assert sum(m.startswith("lofi: INVALID_DURATION: ") and "5 to 120" in m for m in messages) == 1, messages
    assert not any("Traceback" in m for m in messages)


def player_pids(nvim) -> list[int]:
    """The audio players (mpv) the service's player process runs for this Neovim. The player's child shows in /proc
    as mpv once it has exec'd, a moment after the first samples went to it: that is waited for (5 s at most)."""
    root = nvim.exec_lua("return vim.fn.getpid()")
    deadline = time.monotonic() + 5
    while True:
        pids = [pid for pid, argv in descendants(root).items() if argv and os.path.basename(argv[0]) == "mpv" and pid_alive(pid)]
        if pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.02)


WAIT_PLAYBACK = """
local event, match = ...
local got
local off = require('lofi').on(event, function(d)
  for k, v in pairs(match) do if d[k] ~= v then return end end
  got = d
end)
vim.wait(30000, function() return got ~= nil end, 5)
off()
return got
"""


def test_playback_starts_and_stops_a_real_player(nvim) -> None:
    """The service's player plays the track with a real mpv (looping), and :LofiStop ends it and its mpv."""
    track = nvim.exec_lua(WAIT_GENERATION, {"prompt": PROMPT, "duration_sec": 5, "seed": 9})["done"]["track"]
    nvim.exec_lua("_G.started = nil; require('lofi').on('playback_start', function(d) _G.started = d end)")
    assert nvim.exec_lua("return {require('lofi').play(...)}", track["track_id"]) == [True]
    started = nvim.exec_lua("vim.wait(30000, function() return _G.started ~= nil end, 5); return _G.started")
    assert started["track_id"] == track["track_id"] and started["prompt"] == PROMPT
    pids = player_pids(nvim)
    assert pids and all(pid_alive(pid) for pid in pids), "mpv should be playing (looping) the track"
    assert nvim.exec_lua("return require('lofi').status().playing.track_id") == track["track_id"]
    nvim.exec_lua("_G.ended = nil; require('lofi').on('playback_end', function(d) _G.ended = d end)")
    nvim.command("LofiStop")
    ended = nvim.exec_lua("vim.wait(30000, function() return _G.ended ~= nil end, 5); return _G.ended")
    assert ended == {"track_id": track["track_id"], "reason": "stopped"}
    deadline = time.monotonic() + 5
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(pid) for pid in pids)
    assert nvim.exec_lua("vim.wait(5000, function() return require('lofi').status().playing == nil end, 5); return require('lofi').status().playing") is None


def test_autoplay_and_no_player_message(nvim) -> None:
    """Autoplay goes through the service's player; a player that is not installed is one clear error (with what to
    do), and nothing plays."""
    out = nvim.exec_lua(
        """
        local lofi = require('lofi')
        lofi.setup({model = require('lofi.core.config').options.model, cache = require('lofi.core.config').options.cache,
                    autoplay = true, player = {cmd = {'no-such-player-here', '--no-video'}}})
        local done = false
        lofi.generate({prompt = 'no player', duration_sec = 5, seed = 1}, function() done = true end)
        vim.wait(60000, function() return done end, 10)
        vim.wait(5000, function() return #vim.tbl_filter(function(n) return n.level == vim.log.levels.ERROR end, _G.notes) > 0 end, 10)
        return {notes = _G.notes, playing = require('lofi').status().playing}
        """
    )
    assert out.get("playing") is None
    assert any("PLAYER_UNAVAILABLE" in n["msg"] and "no-such-player-here is not installed" in n["msg"] and "player.cmd" in n["msg"] for n in out["notes"]), out["notes"]


def test_the_default_player_is_the_engines_mpv_and_loop_is_the_playlists(nvim) -> None:
    """The player is the service's (mpv fed the mixed stream); setup's player.cmd and player.loop become the engine's
    player_command and playlist_loop settings."""
    out = nvim.exec_lua(
        """
        require('lofi').setup({player = {loop = true}})
        local plain = require('lofi.core.config').remote_settings().engine
        require('lofi').setup({player = {cmd = {'mpv', '--no-video'}, loop = false}})
        return {plain = plain, custom = require('lofi.core.config').remote_settings().engine}
        """
    )
    assert out["plain"].get("player_command") is None and out["plain"]["playlist_loop"] is True  # the engine's default: mpv
    assert out["custom"]["player_command"] == "mpv --no-video" and out["custom"]["playlist_loop"] is False


def test_checkhealth_has_no_error(nvim) -> None:
    nvim.command("checkhealth lofi")
    text = "\n".join(nvim.current.buffer[:])
    assert "lofi.nvim" in text and "remote plugin registered" in text and "engine interpreter" in text
    assert "ERROR" not in text, text


def test_quitting_leaves_no_engine_or_player_behind(tmp_path: Path, monkeypatch) -> None:
    from conftest import TINY
    from nvim_session import quit_nvim, start_nvim

    nvim = start_nvim(tmp_path / "home", monkeypatch.setenv)
    nvim.exec_lua(
        "require('lofi').setup(...)",
        {"model": {"dir": str(TINY)}, "cache": {"dir": str(tmp_path / "cache")}, "autoplay": True,
         "player": {"cmd": ["mpv", "--ao=null", "--no-video", "--really-quiet"], "loop": True}},
    )
    nvim.exec_lua("_G.done = false; require('lofi').generate({prompt = 'x', duration_sec = 5, seed = 1}, function() _G.done = true end)")
    nvim.exec_lua("vim.wait(60000, function() return _G.done end, 10); vim.wait(300)")
    nvim.exec_lua("require('lofi').generate({prompt = 'still running', duration_sec = 120, seed = 2})")
    engine_pid = nvim.exec_lua("vim.wait(5000, function() return require('lofi').is_generating() end, 10); return require('lofi').status().engine.engine_pid")
    nvim.exec_lua(WAIT_PLAYBACK, "playback_start", {})  # autoplay: the first track plays (the second is being made)
    player_pid = player_pids(nvim)[0]
    everything = descendants(nvim.exec_lua("return vim.fn.getpid()"))
    assert pid_alive(engine_pid) and pid_alive(player_pid)
    quit_nvim(nvim)
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in everything) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(engine_pid) and not pid_alive(player_pid)
    assert not [argv for pid, argv in everything.items() if pid_alive(pid)]


def test_autoplay_plays_the_finished_track_through_the_service_player(nvim) -> None:
    """Streaming a track's chunks before it is done (issue 5) was mpv driven by Lua; with the service's player it is
    gone (the radio is how music plays while it is composed): autoplay plays the finished track, with a real mpv."""
    out = nvim.exec_lua(
        """
        local lofi = require('lofi')
        local options = require('lofi.core.config').options
        lofi.setup({model = options.model, cache = options.cache, autoplay = true,
                    player = {cmd = {'mpv', '--ao=null', '--no-video', '--really-quiet'}, loop = true}})
        local order, done = {}, false
        lofi.on('generation_complete', function(d) table.insert(order, 'complete') end)
        lofi.on('playback_start', function(d) table.insert(order, 'playback_start ' .. d.track_id) end)
        local result = lofi.generate({prompt = 'autoplay', duration_sec = 5, seed = 8})
        vim.wait(60000, function() return #order >= 2 end, 5)
        return {order = order, track_id = result.track_id, statusline = lofi.statusline()}
        """
    )
    assert out["order"] == ["complete", f"playback_start {out['track_id']}"]
    assert out["statusline"] == "▶ autoplay"
    assert player_pids(nvim)
    nvim.command("LofiStop")


def test_first_generation_asks_consent_then_downloads_with_progress(tmp_path: Path, monkeypatch) -> None:
    """FR-024…FR-027 from the editor: vim.ui.select asks, the answer is remembered, progress is visible."""
    from fake_hub import serve_tiny
    from nvim_session import quit_nvim, start_nvim

    from lofi_engine.store.catalogue import VARIANTS

    hub = serve_tiny(monkeypatch, tmp_path)
    nvim = start_nvim(tmp_path / "home", monkeypatch.setenv)
    try:
        out = nvim.exec_lua(
            """
            local lofi = require('lofi')
            lofi.setup({cache = {dir = ...}, autoplay = false})
            _G.notes, _G.asked = {}, {}
            vim.notify = function(msg) table.insert(_G.notes, msg) end
            vim.ui.select = function(items, opts, on_choice)
              table.insert(_G.asked, opts.prompt)
              on_choice(items[1])
            end
            local done
            lofi.generate({prompt = 'first track', duration_sec = 5, seed = 1}, function(err, track) done = {err = err, track = track} end)
            vim.wait(60000, function() return done ~= nil end, 10)
            local second
            lofi.generate({prompt = 'second track', duration_sec = 5, seed = 2}, function(err, track) second = {err = err, track = track} end)
            vim.wait(60000, function() return second ~= nil end, 10)
            return {done = done, second = second, asked = _G.asked, notes = _G.notes, progress = require('lofi.ui.messages').progress_log}
            """,
            str(tmp_path / "cache"),
        )
    finally:
        quit_nvim(nvim)
        hub.stop()
    assert out["done"].get("err") is None and out["done"]["track"]["model_version"] == "musicgen-small-fp32-v1"
    assert out["second"].get("err") is None
    assert len(out["asked"]) == 1 and "small" in out["asked"][0] and "GB" in out["asked"][0]
    assert any(line.startswith("lofi: downloading the MusicGen small model ") and "%" in line for line in out["progress"])
    assert not any("%" in n for n in out["notes"]), "progress is not a notification"
    assert len(hub.gets()) == len(VARIANTS["small"].files)


def test_lofi_continue_asks_for_encodecs_weights_downloads_them_and_continues(tmp_path: Path, monkeypatch) -> None:
    """Issue 21 item 1 from the editor: continuing audio asks for EnCodec's weights (what they are for, size, licence),
    downloads them with progress, and the continuation completes; "Not now" is kept for that download only."""
    import numpy as np
    import soundfile
    from fake_hub import serve_encodec, serve_tiny
    from nvim_session import quit_nvim, start_nvim

    hub = serve_tiny(monkeypatch, tmp_path)
    encodec = serve_encodec(hub)
    soundfile.write(tmp_path / "mine.wav", np.sin(np.arange(32000) * 0.05).astype(np.float32) * 0.3, 32000)
    nvim = start_nvim(tmp_path / "home", monkeypatch.setenv)
    try:
        out = nvim.exec_lua(
            """
            local cache, tiny, mine = ...
            local lofi = require('lofi')
            lofi.setup({cache = {dir = cache}, model = {dir = tiny}, autoplay = false})
            _G.asked, _G.answer = {}, 2
            vim.ui.select = function(items, opts, on_choice)
              table.insert(_G.asked, opts.prompt)
              on_choice(items[_G.answer])
            end
            local function continued(seed)
              local done
              lofi.generate({prompt = 'go on', duration_sec = 5, seed = seed, continue_from = mine}, function(err, track) done = {err = err, track = track} end)
              vim.wait(60000, function() return done ~= nil end, 10)
              return done
            end
            local declined = continued(1)
            local declined_again = continued(2)  -- "Not now" is kept: not asked again
            local plain
            lofi.generate({prompt = 'plain', duration_sec = 5, seed = 3}, function(err, track) plain = {err = err, track = track} end)
            vim.wait(60000, function() return plain ~= nil end, 10)
            return {declined = declined, declined_again = declined_again, plain = plain, asked = vim.deepcopy(_G.asked)}
            """,
            str(tmp_path / "cache"), str(TINY), str(tmp_path / "mine.wav"),
        )
    finally:
        quit_nvim(nvim)
    assert out["declined"]["err"]["code"] == "MODEL_NOT_FOUND" and "EnCodec" in out["declined"]["err"]["message"]
    assert out["declined_again"]["err"]["code"] == "MODEL_NOT_FOUND" and out["plain"].get("err") is None
    assert len(out["asked"]) == 1, out["asked"]
    assert out["asked"][0].startswith("lofi.nvim: download EnCodec's weights (facebook/encodec_32khz), which continuing your own audio needs (")
    assert "CC BY-NC 4.0" in out["asked"][0] and hub.gets() == []
    nvim = start_nvim(tmp_path / "home", monkeypatch.setenv)  # a new session: asked again, and this time agreed
    try:
        out = nvim.exec_lua(
            """
            local cache, tiny, mine = ...
            local lofi = require('lofi')
            lofi.setup({cache = {dir = cache}, model = {dir = tiny}, autoplay = false})
            _G.asked = {}
            vim.ui.select = function(items, opts, on_choice)
              table.insert(_G.asked, opts.prompt)
              on_choice(items[1])
            end
            local done
            lofi.generate({prompt = 'go on', duration_sec = 5, seed = 1, continue_from = mine}, function(err, track) done = {err = err, track = track} end)
            vim.wait(60000, function() return done ~= nil end, 10)
            return {done = done, asked = _G.asked, progress = require('lofi.ui.messages').progress_log}
            """,
            str(tmp_path / "cache"), str(TINY), str(tmp_path / "mine.wav"),
        )
    finally:
        quit_nvim(nvim)
        hub.stop()
    assert out["done"].get("err") is None and out["done"]["track"]["duration_sec"] == 6.0, out["done"]
    assert len(out["asked"]) == 1 and "EnCodec" in out["asked"][0]
    assert any(line.startswith("lofi: downloading EnCodec's weights ") and "%" in line for line in out["progress"])
    assert len(hub.gets()) == len(encodec)


def test_lofi_cancel_drops_the_last_queued_job(nvim) -> None:
    out = nvim.exec_lua(
        """
        local lofi, errors = require('lofi'), {}
        lofi.generate({prompt = 'running', duration_sec = 30, seed = 1})
        local queued = lofi.generate({prompt = 'queued', duration_sec = 5, seed = 1}, function(err) errors[#errors + 1] = err end)
        vim.cmd('LofiCancel')
        vim.wait(5000, function() return #errors > 0 end, 10)
        local pending = lofi.queue().pending
        return {errors = errors, queued = queued.track_id, pending = #pending, notes = _G.notes}
        """
    )
    assert out["errors"][0]["code"] == "CANCELLED" and out["pending"] == 0
    assert any(n["msg"] == f'lofi: cancelled {out["queued"]} "queued" (5s, musicgen)' for n in out["notes"]), out["notes"]


def test_lofigenerate_without_a_prompt_asks_for_one(nvim) -> None:
    track = nvim.exec_lua(
        """
        _G.completed = nil
        require('lofi').on('generation_complete', function(d) _G.completed = d end)
        vim.ui.input = function(opts, on_confirm) _G.asked = opts.prompt; on_confirm('rainy night piano') end
        vim.cmd('LofiGenerate duration=5 seed=4')
        vim.wait(60000, function() return _G.completed ~= nil end, 10)
        return {asked = _G.asked, completed = _G.completed}
        """
    )
    assert track["asked"].startswith("lofi")
    assert (track["completed"]["prompt"], track["completed"]["duration_sec"], track["completed"]["seed"]) == ("rainy night piano", 5.0, 4)


def test_statusline_component_works_in_the_statusline_option(nvim) -> None:
    shown = nvim.exec_lua(
        """
        vim.o.statusline = "%{v:lua.require'lofi'.statusline()}"
        local lofi, seen, done = require('lofi'), {}, false
        lofi.on('generation_progress', function()
          table.insert(seen, vim.api.nvim_eval_statusline(vim.o.statusline, {}).str)
        end)
        lofi.generate({prompt = 'bar', duration_sec = 5, seed = 5}, function() done = true end)
        vim.wait(60000, function() return done end, 10)
        table.insert(seen, vim.api.nvim_eval_statusline(vim.o.statusline, {}).str)
        return seen
        """
    )
    assert shown[-1] == ""
    assert any(s.startswith("♪ 50% ") for s in shown[:-1]), shown
