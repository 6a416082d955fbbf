"""Issue 10 on the Lua side: the settings and events vocabulary comes from Python (lua/lofi/schema.lua, generated),
each request default is decided once (by the engine's parser), and setup() called again keeps the queue."""

from __future__ import annotations

from pathlib import Path

from lofi_engine.shared.schema import LUA_FILE, lua_source, schema

REPO = Path(__file__).resolve().parents[1]


def test_the_lua_schema_is_generated_from_the_python_one() -> None:
    assert LUA_FILE == REPO / "lua" / "lofi" / "schema.lua"
    assert LUA_FILE.read_text(encoding="utf-8") == lua_source(), (
        "lua/lofi/schema.lua is out of date: run `make schema` (python -m lofi_engine.shared.schema)"
    )


def test_lua_defaults_and_allowed_values_are_the_schemas(nvim) -> None:
    expected = schema()
    settings = expected["settings"]
    out = nvim.exec_lua(
        """
        local config = require('lofi.core.config')
        local d = config.defaults
        return {
          backend = d.backend, duration_sec = d.duration_sec, device = d.model.device,
          ace_step_variant = d.ace_step.variant, max_size = d.cache.max_size, optimized = d.cache.optimized,
          durations = config.durations, engine_keys = vim.tbl_keys(config.remote_settings().engine),
        }
        """
    )
    assert out["backend"] == settings["backend"]["default"]
    assert out["duration_sec"] == expected["default_duration_sec"]
    assert out["device"] == settings["device"]["default"]
    assert out["ace_step_variant"] == settings["ace_step_variant"]["default"]
    assert out["max_size"] == settings["cache_max_bytes"]["default"]
    assert out["optimized"] is settings["optimized_cache"]["default"]
    assert out["durations"] == expected["durations"]
    assert set(out["engine_keys"]) <= set(settings), "config.remote_settings() sends a setting the engine does not have"


BAD_SETUP = """
local notes, notify = {}, vim.notify
vim.notify = function(msg, level) table.insert(notes, {msg = msg, level = level}) end
local threw, ok, err = pcall(require('lofi').setup, ...)
vim.notify = notify
return {threw = not threw, ok = ok, err = err, notes = notes}
"""


def setup_error(nvim, opts: dict) -> str:
    """setup() with a bad option raises nothing: it notifies one error (the message it also returns) and says false."""
    out = nvim.exec_lua(BAD_SETUP, opts)
    assert out["threw"] is False, f"setup({opts}) raised {out['ok']!r}: it must notify instead"
    assert out["ok"] is False, f"setup({opts}) should fail"
    assert out["notes"] == [{"msg": out["err"], "level": 4}], out["notes"]  # vim.log.levels.ERROR
    message = out["err"]
    assert message.startswith("lofi: ") and "config.lua" not in message and "expected ?" not in message, message
    return message


def setup_ok(nvim, opts: dict) -> bool:
    """setup() with good options: true, and nothing notified."""
    out = nvim.exec_lua(BAD_SETUP, opts)
    assert out["threw"] is False and out["notes"] == [], out
    return out["ok"] is True


def test_a_bad_setup_value_is_reported_plainly_and_keeps_the_options(nvim) -> None:
    before = nvim.exec_lua("return require('lofi.core.config').options.model.dir")
    assert setup_error(nvim, {"duration_sec": "30"}) == (
        'lofi: duration_sec must be a number from 5 to 120 (backend musicgen), not "30" (setup() kept the options it had)'
    )
    assert 'backend must be one of musicgen, ace-step, not "acestep"' in setup_error(nvim, {"backend": "acestep"})
    assert "notify must be a boolean, not 1" in setup_error(nvim, {"notify": 1})
    assert "setup() takes a table of options" in setup_error(nvim, "fast")
    assert nvim.exec_lua("return require('lofi.core.config').options.model.dir") == before, "the options it had are kept"


def test_a_bad_setup_does_not_stop_the_rest_of_init_lua(tmp_path: Path, monkeypatch) -> None:
    from nvim_session import quit_nvim, start_nvim

    init = tmp_path / "init.lua"
    init.write_text(
        "_G.notes = {}\n"
        "vim.notify = function(msg, level) table.insert(_G.notes, {msg = msg, level = level}) end\n"
        "require('lofi').setup({backend = 'acestep', duration_sec = 30})\n"
        "vim.g.after_setup = 1\n",
        encoding="utf-8",
    )
    nvim = start_nvim(tmp_path / "home", monkeypatch.setenv)
    try:
        nvim.command(f"source {init}")  # would raise E5113 (and the line after it never run) if setup() threw
        assert nvim.vars.get("after_setup") == 1
        notes = nvim.exec_lua("return _G.notes")
        assert notes == [{"msg": 'lofi: backend must be one of musicgen, ace-step, not "acestep" (setup() kept the options it had)', "level": 4}], notes
        assert nvim.exec_lua("return require('lofi.core.config').options.backend") == "musicgen", "the defaults stay"
    finally:
        quit_nvim(nvim)


def test_setup_checks_durations_and_choices_against_the_schema(nvim) -> None:
    expected = schema()
    low, high = expected["durations"]["musicgen"]
    assert f"{low:g} to {high:g}" in setup_error(nvim, {"duration_sec": high + 1})
    low, high = expected["durations"]["ace-step"]
    assert f"{low:g} to {high:g}" in setup_error(nvim, {"backend": "ace-step", "duration_sec": low - 3})
    assert ", ".join(expected["backends"]) in setup_error(nvim, {"backend": "jukebox"})
    assert ", ".join(expected["settings"]["device"]["choices"]) in setup_error(nvim, {"model": {"device": "tpu"}})
    assert ", ".join(expected["settings"]["variant"]["choices"]) in setup_error(nvim, {"model": {"variant": "large"}})
    ace_variants = expected["settings"]["ace_step_variant"]["choices"]
    assert ", ".join(ace_variants) in setup_error(nvim, {"ace_step": {"variant": "int4"}})


def test_config_and_events_read_the_schema_rather_than_copies(nvim) -> None:
    """Load config and events over an altered schema: they must follow it (a hand-written copy would not)."""
    out = nvim.exec_lua(
        """
        local real = require('lofi.schema')
        local altered = vim.deepcopy(real)
        altered.backends = {'musicgen', 'radio'}
        altered.settings.backend.choices = {'musicgen', 'radio'}
        altered.durations = {musicgen = {1, 7}, radio = {60, 600}}
        altered.default_duration_sec = 6
        altered.settings.device.choices = {'cpu', 'npu'}
        altered.settings.device.default = 'npu'
        altered.events = {radio_tick = {required = {'track_id'}, optional = {}, doc = 'a tick'}}
        for _, name in ipairs({'lofi.schema', 'lofi.core.config', 'lofi.state.events'}) do package.loaded[name] = nil end
        package.loaded['lofi.schema'] = altered
        local config, events = require('lofi.core.config'), require('lofi.state.events')
        local out = {
          defaults = {config.defaults.duration_sec, config.defaults.model.device},
          radio = config.setup({backend = 'radio', duration_sec = 300, model = {device = 'cpu'}}),
          too_long = select(2, config.setup({duration_sec = 8})),
          names = events.names,
          tick = pcall(events.on, 'radio_tick', function() end),
        }
        for _, name in ipairs({'lofi.schema', 'lofi.core.config', 'lofi.state.events'}) do package.loaded[name] = nil end
        return out
        """
    )
    assert out["defaults"] == [6, "npu"]
    assert out["radio"] is True
    assert "1 to 7" in out["too_long"]
    assert out["names"] == ["radio_tick"] and out["tick"] is True


def test_on_an_unknown_event_errors_listing_the_schemas_events(nvim) -> None:
    ok, message = nvim.exec_lua("return {pcall(require('lofi').on, 'nonexistent', function() end)}")
    assert ok is False and '"nonexistent"' in message
    assert ", ".join(sorted(schema()["events"])) in message


CAPTURE_REQUESTS = """
local engine = require('lofi.core.engine')
local request = engine.request
_G.sent = {}
engine.request = function(method, params)
  table.insert(_G.sent, {method = method, params = vim.deepcopy(params or {})})
  return request(method, params)
end
"""


def test_generate_leaves_the_default_backend_to_the_engine(nvim) -> None:
    """The configured backend goes only in the engine settings; a request names one only when the caller did."""
    nvim.exec_lua(CAPTURE_REQUESTS)
    out = nvim.exec_lua(
        """
        local lofi = require('lofi')
        lofi.generate({prompt = 'no backend', duration_sec = 120, seed = 1})
        lofi.generate({prompt = 'named backend', duration_sec = 5, seed = 1, backend = 'musicgen'})
        local generates = vim.tbl_filter(function(s) return s.method == 'generate' end, _G.sent)
        return {
          params = vim.tbl_map(function(s) return s.params end, generates),
          engine_backend = require('lofi.core.config').remote_settings().engine.backend,
          queue = lofi.queue(),
        }
        """
    )
    unnamed, named = out["params"]
    assert "backend" not in unnamed and unnamed["duration_sec"] == 120
    assert named["backend"] == "musicgen"
    assert out["engine_backend"] == schema()["settings"]["backend"]["default"]
    jobs = [out["queue"]["running"], *out["queue"]["pending"]]
    assert [job["backend"] for job in jobs] == ["musicgen", "musicgen"], "the engine filled the default backend"


def test_tracks_come_most_recently_played_first(nvim) -> None:
    """The engine's order, not re-sorted by creation: the older track, played again, comes first."""
    out = nvim.exec_lua(
        """
        local lofi, done = require('lofi'), {}
        for _, prompt in ipairs({'older', 'newer'}) do
          lofi.generate({prompt = prompt, duration_sec = 5, seed = 1}, function(err, track) done[prompt] = {err = err, track = track} end)
          vim.wait(60000, function() return done[prompt] ~= nil end, 10)
          if done[prompt].err then return {err = done[prompt].err} end
        end
        local before = vim.tbl_map(function(t) return t.prompt end, (lofi.tracks()))
        local played = lofi.play(done.older.track.track_id)
        lofi.stop()
        local after = lofi.tracks()
        return {before = before, played = played,
                after = vim.tbl_map(function(t) return t.prompt end, after),
                created = vim.tbl_map(function(t) return t.created_at end, after)}
        """
    )
    assert out.get("err") is None, out["err"]
    assert out["before"] == ["newer", "older"]
    assert out["played"] is True
    assert out["after"] == ["older", "newer"], "tracks() must keep the engine's most-recently-played order"
    assert out["created"][0] < out["created"][1]


def test_setup_again_with_jobs_queued_keeps_them_and_says_so(nvim) -> None:
    out = nvim.exec_lua(
        """
        local lofi = require('lofi')
        local config = require('lofi.core.config')
        local options = vim.deepcopy(config.options)
        lofi.generate({prompt = 'long one', duration_sec = 120, seed = 1})
        lofi.generate({prompt = 'second', duration_sec = 5, seed = 1})
        lofi.generate({prompt = 'third', duration_sec = 5, seed = 1})
        local function length()
          local queue = lofi.queue()
          return (queue.running and 1 or 0) + #queue.pending
        end
        local before = length()
        _G.notes = {}
        lofi.setup(options)  -- the same settings: nothing to say
        local same = vim.deepcopy(_G.notes)
        options.cache.max_size = options.cache.max_size - 1
        lofi.setup(options)
        local changed = vim.deepcopy(_G.notes)
        local after = length()
        return {before = before, after = after, same = same, changed = changed,
                max_size = config.remote_settings().engine.cache_max_bytes, expected = options.cache.max_size}
        """
    )
    assert out["before"] == out["after"] == 3
    assert out["same"] == []
    assert [n["msg"] for n in out["changed"]] == [
        "lofi: settings changed; 3 queued job(s) finish with the settings they were queued with"
    ]
    assert out["max_size"] == out["expected"]


def test_setup_before_any_request_or_with_a_failing_plugin_says_nothing(nvim) -> None:
    out = nvim.exec_lua(
        """
        local lofi = require('lofi')
        local options = vim.deepcopy(require('lofi.core.config').options)
        options.cache.max_size = 12345
        _G.notes = {}
        lofi.setup(options)  -- no request yet: the engine client does not exist
        local fresh = vim.deepcopy(_G.notes)
        lofi.queue()
        local request = require('lofi.core.engine').request
        require('lofi.core.engine').request = function() return nil, {code = 'PLUGIN_ERROR', message = 'gone'} end
        options.cache.max_size = 54321
        local ok = pcall(lofi.setup, options)
        require('lofi.core.engine').request = request
        return {fresh = fresh, ok = ok, notes = _G.notes}
        """
    )
    assert out["fresh"] == [] and out["ok"] is True and out["notes"] == []
