"""Issue 12, everyday use in a real headless Neovim: the statusline is right at every moment, progress stays out of
:messages, nothing fails silently, quitting never hangs, tracks are named by their prompt, the help opens at its top.
(The screen-level checks, in a real terminal, are in test_nvim_screen.py.)"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from conftest import TINY
from nvim_session import REPO, quit_nvim, start_nvim
from test_nvim_schema import setup_error, setup_ok
from lofi_engine.dev.processes import descendants, pid_alive
from test_nvim import WAIT_GENERATION, WAIT_PLAYBACK, player_pids

SETUP = "require('lofi').setup(...)"


def start(tmp_path: Path, monkeypatch, **options):
    """A Neovim with lofi on the tiny model, vim.notify left as Neovim's own."""
    nvim = start_nvim(tmp_path / "home", monkeypatch.setenv)
    settings = {"model": {"dir": str(TINY)}, "cache": {"dir": str(tmp_path / "cache")}, "autoplay": False, **options}
    nvim.exec_lua(SETUP, settings)
    return nvim


def lofi_messages(nvim) -> list[str]:
    return [line for line in nvim.exec_lua("return vim.api.nvim_exec2('messages', {output = true}).output").splitlines() if "lofi" in line]


# ---- item 4: the statusline ------------------------------------------------------------------------------------

STATES = """
local lofi = require('lofi')
local seen = {}
local function note(when) table.insert(seen, {when, lofi.statusline(), lofi.is_generating()}) end
for _, name in ipairs({'model_load_progress', 'generation_start', 'generation_progress', 'generation_complete', 'generation_error'}) do
  lofi.on(name, function() note(name) end)
end
local done = 0
lofi.generate({prompt = 'first', duration_sec = 5, seed = 1}, function() done = done + 1 end)
note('accepted')
lofi.generate({prompt = 'second', duration_sec = 5, seed = 2}, function() done = done + 1 end)
note('second accepted')
local _, failed = nil, nil
lofi.generate({prompt = 'no export', duration_sec = 10, seed = 3, backend = 'ace-step'}, function(err) failed = err; done = done + 1 end)
note('third accepted')
vim.wait(60000, function() return done == 3 end, 5)
note('end')
return {seen = seen, failed = failed}
"""


def test_statusline_and_is_generating_at_every_state(nvim, tmp_path: Path) -> None:
    nvim.exec_lua(SETUP, {"model": {"dir": str(TINY)}, "ace_step": {"dir": str(tmp_path / "no-export")},
                          "cache": {"dir": str(tmp_path / "cache")}, "autoplay": False})
    out = nvim.exec_lua(STATES)
    seen = out["seen"]
    first = {when: (line, busy) for when, line, busy in reversed(seen)}  # the first time each moment came
    assert first["accepted"] == ("♪ queued", True), seen
    assert first["second accepted"] == ("♪ queued +1", True), seen
    assert first["third accepted"] == ("♪ queued +1", True), "a refused request is not counted"
    loading = [line for when, line, _ in seen if when == "model_load_progress"]
    assert loading and all(line.startswith("♪ loading ") for line in loading), seen
    generating = [line for when, line, busy in seen if when == "generation_progress"]
    assert generating and all(line.startswith("♪ ") and "%" in line for line in generating), seen
    assert any(line.startswith("♪ 50% ") and line.endswith(" +1") for line in generating), seen
    assert seen[-1][1:] == ["", False], "done: the statusline is empty and nothing is generating"
    completes = [line for when, line, _ in seen if when == "generation_complete"]
    assert completes[-1] == "" or completes[-1].startswith("♪ "), seen
    # item 8: the ACE-Step error from Lua names the setup() option
    assert out["failed"]["code"] == "MODEL_NOT_FOUND" and "ace_step.dir" in out["failed"]["message"], out["failed"]
    assert "ace_step_model_dir" not in out["failed"]["message"]


def test_statusline_while_downloading_and_awaiting_consent(nvim) -> None:
    out = nvim.exec_lua(
        """
        local lofi = require('lofi')
        vim.ui.select = function() end -- the question stays open
        local seen = {}
        lofi._dispatch('consent_required', {variant = 'small', size_bytes = 1, files = {}, license = 'x', track_id = 'abc'})
        vim.wait(1000, function() return lofi.statusline() ~= '' end, 5)
        table.insert(seen, lofi.statusline())
        lofi._dispatch('download_progress', {variant = 'small', file = 'f', bytes_downloaded = 5, bytes_total = 10, percent = 50})
        vim.wait(1000, function() return lofi.statusline():find('download') ~= nil end, 5)
        table.insert(seen, lofi.statusline())
        lofi._dispatch('download_complete', {variant = 'small', path = '/x'})
        vim.wait(1000, function() return lofi.statusline() == '' end, 5)
        table.insert(seen, lofi.statusline())
        return seen
        """
    )
    assert out == ["♪ awaiting consent", "♪ downloading 50%", ""]


def test_the_statusline_is_redrawn_when_a_job_ends(nvim) -> None:
    """The last redraw is never dropped by the throttle: after the job's end, every statusline is redrawn."""
    out = nvim.exec_lua(
        """
        local lofi, done, redraws = require('lofi'), false, {}
        local real = vim.cmd
        local ui = require('lofi.ui.statusline')
        lofi.on('generation_complete', function() done = true end)
        vim.cmd = setmetatable({}, {__index = real, __call = function(_, c, ...)
          if c == 'redrawstatus!' then table.insert(redraws, {done, lofi.statusline()}) end
          return real(c, ...)
        end})
        lofi.generate({prompt = 'redraw', duration_sec = 5, seed = 7})
        vim.wait(60000, function() return done end, 5)
        vim.wait(500)
        vim.cmd = real
        return redraws
        """
    )
    after = [line for done, line in out if done]
    assert after and after[-1] == "", out


# ---- item 3: progress without noise ----------------------------------------------------------------------------

def test_twenty_progress_events_leave_no_line_in_messages(tmp_path: Path, monkeypatch) -> None:
    nvim = start(tmp_path, monkeypatch)
    try:
        out = nvim.exec_lua(
            """
            local lofi, done = require('lofi'), nil
            local progress = 0
            lofi.on('generation_progress', function() progress = progress + 1 end)
            lofi.generate({prompt = 'quiet please', duration_sec = 5, seed = 1}, function(err, track) done = true end)
            vim.wait(60000, function() return done end, 5)
            return {progress = progress, shown = require('lofi.ui.messages').progress_log}
            """
        )
        messages = lofi_messages(nvim)
    finally:
        quit_nvim(nvim)
    generating = [line for line in out["shown"] if line.startswith('lofi: generating "quiet please" ')]
    assert out["progress"] == 20 and len(generating) == 20, out["shown"]
    assert not any("%" in line for line in messages), messages
    assert len(messages) <= 2, messages  # the start and the completion notifications
    assert any("quiet please" in line and "ready" in line for line in messages), messages


def test_a_long_error_is_one_short_line_with_the_details_in_the_log(tmp_path: Path, monkeypatch) -> None:
    nvim = start(tmp_path, monkeypatch)
    try:
        nvim.command("set columns=80")
        long = "x" * 400
        nvim.exec_lua("require('lofi.ui.messages').error({code = 'MODEL_LOAD_FAILED', message = ...})", long)
        messages = lofi_messages(nvim)
        nvim.command("LofiLog")
        log = "\n".join(nvim.current.buffer[:])
        name = nvim.current.buffer.name
    finally:
        quit_nvim(nvim)
    assert len(messages) == 1 and len(messages[0]) < 80 and messages[0].endswith("(:LofiLog)"), messages
    assert name.endswith("lofi/plugin.log") and long in log


def test_every_error_reaches_the_plugin_log(nvim, tmp_path: Path) -> None:
    """Errors the remote plugin returns, generation_error events and errors the Lua side finds: all in :LofiLog."""
    out = nvim.exec_lua(
        """
        local lofi, failed, cancelled, started = require('lofi'), nil, nil, false
        lofi.on('generation_progress', function() started = true end)  -- the engine (and its log) is up
        lofi.generate({prompt = 'short', duration_sec = 3})  -- the engine refuses it: INVALID_DURATION
        lofi.generate({prompt = 'no export', duration_sec = 10, backend = 'ace-step'}, function(err) failed = err end)
        lofi.generate({prompt = 'running', duration_sec = 30, seed = 1})
        local queued = lofi.generate({prompt = 'queued', duration_sec = 5, seed = 1}, function(err) cancelled = err end)
        lofi.cancel(queued.track_id)  -- a generation_error event (CANCELLED)
        vim.wait(30000, function() return failed ~= nil and cancelled ~= nil and started end, 5)
        vim.cmd('LofiGenerate rain foo=bar')  -- the command line refuses it
        vim.cmd('LofiLog')
        local lines = {}
        for _, win in ipairs(vim.api.nvim_tabpage_list_wins(0)) do
          local buf = vim.api.nvim_win_get_buf(win)
          table.insert(lines, {vim.api.nvim_buf_get_name(buf), table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\\n')})
        end
        return {files = lines, paths = require('lofi.ui.messages').log_paths(), state = vim.fn.stdpath('state')}
        """,
    )
    files = dict(out["files"])
    assert out["paths"]["plugin"] == out["state"] + "/lofi/plugin.log"
    plugin_log = files[out["paths"]["plugin"]]
    assert "INVALID_DURATION" in plugin_log
    assert "MODEL_NOT_FOUND" in plugin_log and "ace_step" in plugin_log
    assert "generation_error" in plugin_log and "CANCELLED" in plugin_log
    assert "foo is not an option" in plugin_log
    assert out["paths"]["engine"] in files, "the engine log opens too"


# ---- item 5: nothing fails silently ----------------------------------------------------------------------------

def test_a_failing_player_is_reported_with_its_own_message(nvim, tmp_path: Path) -> None:
    failing = ["sh", "-c", "echo 'cannot open audio device hw:7' >&2; exit 1", "sh"]
    out = nvim.exec_lua(
        """
        local lofi = require('lofi')
        local options = vim.deepcopy(require('lofi.core.config').options)
        options.player = {cmd = ..., loop = true}
        lofi.setup(options)
        local done
        lofi.generate({prompt = 'play me', duration_sec = 5, seed = 1}, function(err, track) done = track end)
        vim.wait(60000, function() return done ~= nil end, 5)
        _G.notes = {}
        vim.cmd('LofiPlay')
        vim.wait(5000, function() return #_G.notes > 1 end, 5)
        vim.wait(5000, function() return lofi.status().playing == nil end, 5) -- the player process reports it stopped
        return {notes = _G.notes, playing = lofi.status().playing}
        """,
        failing,
    )
    errors = [n["msg"] for n in out["notes"] if n["level"] == 4]
    assert len(errors) == 1, out["notes"]
    # the service's player process feeds the player; when it fails, playback ends with PLAYBACK_FAILED and its words
    assert "PLAYBACK_FAILED" in errors[0] and "sh stopped" in errors[0] and "cannot open audio device hw:7" in errors[0]
    assert '"play me"' in errors[0]
    assert out.get("playing") is None


def test_lofistop_confirms(nvim) -> None:
    out = nvim.exec_lua(
        """
        local lofi, done = require('lofi'), nil
        lofi.generate({prompt = 'stop me', duration_sec = 5, seed = 2}, function(err, track) done = track end)
        vim.wait(60000, function() return done ~= nil end, 5)
        assert(lofi.play(done))
        _G.notes = {}
        vim.cmd('LofiStop')
        vim.cmd('LofiStop')
        return _G.notes
        """
    )
    messages = [n["msg"] for n in out]
    assert messages[0].startswith("lofi: stopped ") and '"stop me" (5s, musicgen)' in messages[0], messages
    assert messages[1] == "lofi: nothing is playing"


def test_checkhealth_reports_a_missing_model_dir(nvim, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    nvim.exec_lua(SETUP, {"model": {"dir": str(missing)}, "cache": {"dir": str(tmp_path / "cache")}})
    nvim.command("checkhealth lofi")
    text = "\n".join(nvim.current.buffer[:])
    assert f"model.dir {missing} does not exist" in text, text
    assert "ERROR" in text
    assert f"available in {missing}" not in text and "OK model musicgen" not in text


def test_checkhealth_reports_a_model_dir_without_the_model(nvim, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    nvim.exec_lua(SETUP, {"model": {"dir": str(empty)}, "cache": {"dir": str(tmp_path / "cache")}})
    nvim.command("checkhealth lofi")
    text = "\n".join(nvim.current.buffer[:])
    assert f"model.dir {empty} lacks config.json" in text, text


def test_a_misspelled_setup_key_names_the_closest_one(nvim) -> None:
    message = setup_error(nvim, {"modle": {"dir": "/x"}})
    assert 'unknown option "modle"' in message and 'did you mean "model"?' in message
    message = setup_error(nvim, {"model": {"varient": "small"}})
    assert 'unknown option "model.varient"' in message and 'did you mean "model.variant"?' in message
    message = setup_error(nvim, {"autoply": False})
    assert '"autoplay"' in message
    assert setup_ok(nvim, {"model": {"dir": "/x", "threads": 2}})


def test_lofigenerate_refuses_an_unknown_option_and_a_bad_duration_before_asking(nvim) -> None:
    out = nvim.exec_lua(
        """
        local asked = 0
        vim.ui.input = function(opts, on_confirm) asked = asked + 1 end
        vim.cmd('LofiGenerate rain foo=bar')
        vim.cmd('LofiGenerate duration=500')
        vim.cmd('LofiGenerate duraton=20')
        local queue = require('lofi').queue()
        return {notes = _G.notes, asked = asked, queued = (queue.running and 1 or 0) + #queue.pending}
        """
    )
    messages = [n["msg"] for n in out["notes"]]
    assert messages[0].startswith("lofi: INVALID_PARAMS: foo is not an option of :LofiGenerate"), messages
    assert messages[1].startswith("lofi: INVALID_DURATION: duration_sec must be a number from 5 to 120"), messages
    assert "did you mean duration=?" in messages[2], messages
    assert out["asked"] == 0 and out["queued"] == 0


# ---- item 7: people, not hashes ---------------------------------------------------------------------------------

def test_completion_and_messages_name_the_prompt(nvim) -> None:
    out = nvim.exec_lua(
        """
        local lofi, done = require('lofi'), nil
        lofi.generate({prompt = 'rainy piano', duration_sec = 5, seed = 3}, function(err, track) done = track end)
        vim.wait(60000, function() return done ~= nil end, 5)
        lofi.generate({prompt = 'long one', duration_sec = 120, seed = 1})
        local queued = lofi.generate({prompt = 'waiting one', duration_sec = 5, seed = 1})
        return {
          track = done.track_id, queued = queued.track_id,
          play = vim.fn.getcompletion('LofiPlay ', 'cmdline'),
          play_by_prompt = vim.fn.getcompletion('LofiPlay rainy', 'cmdline'),
          cancel = vim.fn.getcompletion('LofiCancel wait', 'cmdline'),
          notes = _G.notes,
        }
        """
    )
    assert out["play"] == [f'{out["track"]} "rainy piano" (5s, musicgen)']
    assert out["play_by_prompt"] == out["play"]
    assert out["cancel"] == [f'{out["queued"]} "waiting one" (5s, musicgen)']
    messages = [n["msg"] for n in out["notes"]]
    assert f'lofi: queued {out["queued"]} "waiting one" (5s, musicgen) at position 1' in messages, messages
    # what completion inserts is accepted as it is, and so is a prompt
    nvim.command(f"LofiCancel {out['cancel'][0]}")
    nvim.command("LofiPlay rainy piano")
    after = nvim.exec_lua(
        "vim.wait(5000, function() return #vim.tbl_filter(function(n) return n.msg:find('cancelled') end, _G.notes) > 0 end, 5);"
        "return {notes = _G.notes, playing = require('lofi.state.player').current and require('lofi.state.player').current.track_id}"
    )
    messages = [n["msg"] for n in after["notes"]]
    assert f'lofi: cancelled {out["queued"]} "waiting one" (5s, musicgen)' in messages, messages
    assert after["playing"] == out["track"]
    nvim.command("LofiStop")


def test_lofi_cancel_of_a_running_job_names_its_length_once(nvim) -> None:
    """generation_chunk events (2 s of audio each) do not turn a 120 s job into "2s" in what :LofiCancel says."""
    out = nvim.exec_lua(
        """
        local lofi, done, chunks = require('lofi'), nil, 0
        lofi.on('generation_chunk', function() chunks = chunks + 1 end)
        local result = lofi.generate({prompt = 'long night', duration_sec = 120, seed = 1}, function(err) done = err end)
        vim.wait(60000, function() return chunks >= 2 end, 5)
        vim.cmd('LofiCancel')
        vim.wait(60000, function() return done ~= nil end, 5)
        vim.wait(200)
        return {track = result.track_id, chunks = chunks, done = done, notes = _G.notes}
        """
    )
    assert out["chunks"] >= 2, "the job was running (and had sent chunks) when it was cancelled"
    assert out["done"]["code"] == "CANCELLED"
    messages = [n["msg"] for n in out["notes"]]
    cancelling = [m for m in messages if "cancelling" in m]
    assert cancelling == [f'lofi: cancelling {out["track"]} "long night" (120s, musicgen)'], messages
    assert f'lofi: cancelled {out["track"]} "long night" (120s, musicgen)' in messages, messages


# ---- item 4: the queue window -----------------------------------------------------------------------------------

def test_lofiqueue_updates_while_open_and_opens_once(nvim) -> None:
    out = nvim.exec_lua(
        """
        local lofi, done, second_started = require('lofi'), false, false
        lofi.on('generation_start', function(d) if d.prompt == 'second' then second_started = true end end)
        lofi.generate({prompt = 'first', duration_sec = 10, seed = 1}, function() done = true end)
        lofi.generate({prompt = 'second', duration_sec = 120, seed = 1})
        vim.cmd('LofiQueue')
        local win = vim.api.nvim_get_current_win()
        local before = vim.api.nvim_buf_get_lines(0, 0, -1, false)
        vim.cmd('wincmd p')
        vim.cmd('LofiQueue')
        local floats = 0
        for _, w in ipairs(vim.api.nvim_list_wins()) do
          if vim.api.nvim_win_get_config(w).relative ~= '' then floats = floats + 1 end
        end
        local again = vim.api.nvim_get_current_win()
        vim.wait(60000, function() return done and second_started end, 5)
        local buf = vim.api.nvim_win_get_buf(win)
        -- the window follows the queue by itself: wait for it to show the second job running (it takes seconds more)
        vim.wait(5000, function()
          local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
          return #lines == 1 and lines[1]:find('second') ~= nil and lines[1]:find('running') ~= nil
        end, 5)
        return {before = before, after = vim.api.nvim_buf_get_lines(buf, 0, -1, false), floats = floats, same = win == again}
        """
    )
    assert out["floats"] == 1 and out["same"] is True
    assert "first" in out["before"][0] and "second" in out["before"][1]
    assert len(out["after"]) == 1 and "second" in out["after"][0] and "running" in out["after"][0], out


# ---- item 8: help ------------------------------------------------------------------------------------------------

def test_help_lofi_opens_at_the_top(nvim, tmp_path: Path) -> None:
    doc = tmp_path / "rtp" / "doc"
    shutil.copytree(REPO / "doc", doc, ignore=shutil.ignore_patterns("tags"))
    nvim.command(f"helptags {doc}")
    nvim.command(f"set rtp^={doc.parent}")
    for topic in ("lofi", "lofi.nvim"):
        nvim.command(f"help {topic}")
        assert nvim.current.buffer.name.endswith("doc/lofi.txt")
        row = nvim.current.window.cursor[0]
        assert row <= 2 and f"*{topic}*" in nvim.current.buffer[row - 1], (topic, row)
        nvim.command("helpclose")


# ---- item 6: quitting never hangs ---------------------------------------------------------------------------------

def process_ids(nvim) -> dict:
    ids = nvim.exec_lua(
        """
        local ids = {nvim = vim.fn.getpid()}
        for _, c in ipairs(vim.api.nvim_list_chans()) do
          if c.client and c.client.type == 'host' then ids.host = vim.fn.jobpid(c.id) end
        end
        local engine = require('lofi').status().engine
        ids.engine = engine and engine.engine_pid or nil
        return ids
        """
    )
    players = player_pids(nvim)
    if players:  # the audio player (mpv) and the service's player process that feeds it
        ids["player"] = players[0]
        ids["player process"] = int(Path(f"/proc/{players[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])
    for pid in descendants(ids["nvim"]):  # and anything else lofi started
        ids.setdefault(f"process {pid}", pid)
    return ids


def quit_and_wait(nvim, pids: dict) -> None:
    """Quit, then give the processes up to 30 s to go (the assert that follows says which did not)."""
    quit_nvim(nvim)
    deadline = time.monotonic() + 30
    while any(pid_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_quitting_mid_generation_while_playing_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    nvim = start(tmp_path, monkeypatch, player={"cmd": ["mpv", "--ao=null", "--no-video", "--really-quiet"], "loop": True})
    track = nvim.exec_lua(WAIT_GENERATION, {"prompt": "first", "duration_sec": 5, "seed": 1})["done"]["track"]
    nvim.exec_lua("assert(require('lofi').play(...))", track)
    assert nvim.exec_lua(WAIT_PLAYBACK, "playback_start", {"track_id": track["track_id"]})
    nvim.exec_lua(
        """
        local started = false
        require('lofi').on('generation_progress', function() started = true end)
        require('lofi').generate({prompt = 'still running', duration_sec = 120, seed = 2})
        vim.wait(30000, function() return started end, 5)
        """
    )
    pids = process_ids(nvim)
    named = {name for name in pids if not name.startswith("process ")}
    assert named == {"nvim", "host", "engine", "player", "player process"} and all(pid_alive(p) for p in pids.values()), pids
    quit_and_wait(nvim, pids)
    assert not [name for name, pid in pids.items() if pid_alive(pid)], pids


def test_quitting_while_the_consent_question_is_open_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nvim = start_nvim(tmp_path / "home", monkeypatch.setenv)
    nvim.exec_lua(SETUP, {"cache": {"dir": str(tmp_path / "cache")}, "autoplay": False})
    asked = nvim.exec_lua(
        """
        local asked = false
        vim.ui.select = function() asked = true end -- a question that is never answered
        require('lofi').generate({prompt = 'needs the model', duration_sec = 5, seed = 1})
        vim.wait(10000, function() return asked end, 5)
        return {asked, require('lofi').statusline()}
        """
    )
    assert asked == [True, "♪ awaiting consent"]
    pids = process_ids(nvim)
    assert "host" in pids and "engine" not in pids
    quit_and_wait(nvim, pids)
    assert not [name for name, pid in pids.items() if pid_alive(pid)], pids


def test_progress_goes_to_native_progress_fidget_or_a_replacing_notifier(nvim) -> None:
    """Which way the progress line goes, with each one stubbed: Neovim 0.12's `nvim_echo(…, {kind = 'progress'})`,
    fidget.nvim's progress handle, a notifier that replaces (nvim-notify), and a plain echo without history."""
    out = nvim.exec_lua(
        """
        local ui = require('lofi.ui.messages')
        local calls = {}
        local real_has, real_echo, real_notify = vim.fn.has, vim.api.nvim_echo, vim.notify
        local function run(key)
          ui.progress(key, 'lofi: step 1', 10); ui.progress(key, 'lofi: step 2', 20); ui.progress_done(key, 'success')
        end
        -- Neovim 0.12
        vim.fn.has = function(f) if f == 'nvim-0.12' then return 1 end return real_has(f) end
        vim.api.nvim_echo = function(chunks, history, opts)
          table.insert(calls, {'native', chunks[1][1], history, opts.kind, opts.status, opts.percent, opts.id}); return 7
        end
        run('a')
        vim.fn.has, vim.api.nvim_echo = real_has, real_echo
        -- fidget.nvim
        package.loaded['fidget.progress'] = {handle = {create = function(o)
          table.insert(calls, {'fidget create', o.message, o.percentage})
          return {report = function(_, r) table.insert(calls, {'fidget report', r.message, r.percentage}) end,
                  finish = function() table.insert(calls, {'fidget finish'}) end}
        end}}
        run('b')
        package.loaded['fidget.progress'] = nil
        -- nvim-notify
        package.loaded['notify'] = {}
        vim.notify = function(msg, level, opts)
          table.insert(calls, {'notify', msg, opts.replace and opts.replace.n or 0}); return {n = #calls}
        end
        run('c')
        package.loaded['notify'] = nil
        vim.notify = real_notify
        -- nothing: an echo without history
        vim.api.nvim_echo = function(chunks, history, opts) table.insert(calls, {'echo', chunks[1][1], history}) end
        run('d')
        vim.api.nvim_echo = real_echo
        return calls
        """
    )
    assert out[:3] == [
        ["native", "lofi: step 1", False, "progress", "running", 10],
        ["native", "lofi: step 2", False, "progress", "running", 20, 7],
        ["native", "", False, "progress", "success", 100, 7],
    ]
    assert out[3:6] == [["fidget create", "lofi: step 1", 10], ["fidget report", "lofi: step 2", 20], ["fidget finish"]]
    assert out[6:8] == [["notify", "lofi: step 1", 0], ["notify", "lofi: step 2", 7]]
    assert out[8:] == [["echo", "lofi: step 1", False], ["echo", "lofi: step 2", False]]


def test_help_works_with_a_manual_runtimepath_setup(tmp_path) -> None:
    """No plugin manager, no :helptags: the plugin makes doc/tags itself when the folder is writable."""
    import shutil
    import subprocess

    from nvim_session import REPO, nvim_executable

    root = tmp_path / "lofi.nvim"
    for part in ("plugin", "lua", "doc"):
        shutil.copytree(REPO / part, root / part)
    (root / "doc" / "tags").unlink(missing_ok=True)
    env = {**os.environ, **{f"XDG_{k}_HOME": str(tmp_path / k.lower()) for k in ("CONFIG", "DATA", "STATE", "CACHE")}}
    out = subprocess.run(
        [nvim_executable(), "--headless", "-u", "NORC", "-i", "NONE", "-n", "--cmd", f"set rtp^={root}",
         "-c", "lua local ok, e = pcall(vim.cmd, 'help lofi'); io.stdout:write(ok and 'HELP ' .. vim.fn.expand('%:t') or tostring(e))",
         "-c", "qa!"],
        capture_output=True, text=True, timeout=30, env=env,
    )
    assert out.stdout.strip() == "HELP lofi.txt", out.stdout + out.stderr
    assert (root / "doc" / "tags").exists()
