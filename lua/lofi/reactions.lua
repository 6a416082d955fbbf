-- What the plugin itself does on each engine event: notifications (start, completion, errors), the progress line,
-- statusline redraws, callbacks, autoplay (through the service's player), playback errors and the consent question.
local callbacks = require("lofi.callbacks")
local config = require("lofi.config")
local consent = require("lofi.consent")
local events = require("lofi.events")
local player = require("lofi.player")
local ui = require("lofi.ui")

local M = {}

---The last download error shown, for a few seconds: the generations waiting on the download fail with the same
---error, which is not shown again.
local last_download_error = nil

local function percent_line(d, doing)
  local left = d.eta_sec and (" (%s left)"):format(ui.clock(d.eta_sec)) or ""
  return ("lofi: %s %q %d%%%s"):format(doing, (events.known[d.track_id] or {}).prompt or d.track_id, d.percent, left)
end

---A piece the radio composes (not asked for with generate()): no notifications, never autoplayed.
local function radio_piece(track_id)
  return not events.requested[track_id] and player.radio.active
end

---A playback or radio event: statuslines follow.
local function redraw()
  ui.progress_changed(true)
end

---@type table<string, fun(data: table)>
local reactions = {
  generation_start = function(d)
    if radio_piece(d.track_id) then
      ui.progress_changed()
      return
    end
    ui.notify("lofi: generating " .. ui.describe(d.track_id, d))
    ui.progress_changed()
  end,
  generation_progress = function(d)
    local doing = d.stage == "decode" and "decoding" or "generating" -- ACE-Step's second stage turns latents into audio
    ui.progress(d.track_id, percent_line(d, doing), d.percent)
    ui.progress_changed()
  end,
  generation_complete = function(d)
    ui.progress_done(d.track_id, "success")
    ui.progress_changed(true)
    if radio_piece(d.track_id) then
      return -- the radio plays it
    end
    local requested = events.requested[d.track_id]
    events.requested[d.track_id] = nil
    local took = d.cached and "from the cache" or ("in %s"):format(ui.clock(d.generation_time_sec))
    ui.notify(("lofi: ready %s, %s"):format(ui.describe(d.track_id, d), took), vim.log.levels.INFO, { progress = d.track_id })
    callbacks.finish(d.track_id, nil, d)
    if config.options.autoplay and requested and not player.radio.active then
      local ok, err = require("lofi").play(d)
      if not ok and err then
        ui.report(err, { what = "autoplay" })
      end
    end
  end,
  generation_error = function(d)
    events.requested[d.track_id] = nil
    if radio_piece(d.track_id) then
      ui.progress_done(d.track_id, "failed")
      ui.progress_changed(true)
      return -- radio_state (mode error) says it
    end
    local cancelled = d.code == "CANCELLED"
    ui.progress_done(d.track_id, cancelled and "cancel" or "failed")
    ui.progress_changed(true)
    if cancelled then
      ui.notify("lofi: cancelled " .. ui.describe(d.track_id), vim.log.levels.INFO, { progress = d.track_id })
    elseif not (last_download_error and last_download_error.code == d.code) then
      ui.error(d, { logged = true, what = ui.describe(d.track_id), progress = d.track_id })
    end -- else: the download's error, already shown once
    callbacks.finish(d.track_id, { code = d.code, message = d.message }, nil)
  end,
  model_load_progress = function(d)
    local what = d.stage == "verify" and "checking the model files" or "loading the model"
    ui.progress(d.track_id or "model", ("lofi: %s %d%%"):format(what, d.percent), d.percent)
    ui.progress_changed()
  end,
  consent_required = function(d)
    ui.progress_changed(true)
    consent.ask(d)
  end,
  download_progress = function(d)
    local text = "lofi: downloading the model %d%% (%.2f of %.2f GB)"
    ui.progress("download", text:format(d.percent, d.bytes_downloaded / 1e9, d.bytes_total / 1e9), d.percent)
    ui.progress_changed()
  end,
  download_complete = function()
    ui.progress_done("download", "success")
    ui.progress_changed(true)
    ui.notify("lofi: the model is downloaded", vim.log.levels.INFO, { progress = "download" })
  end,
  playback_start = redraw,
  playback_pause = redraw,
  playback_resume = redraw,
  playback_end = function(d)
    redraw()
    if d.reason == "error" then
      local what = d.track_id and ("playing " .. ui.describe(d.track_id)) or nil
      ui.error({ code = d.code or "PLAYBACK_FAILED", message = d.message or "the player failed" }, { logged = true, what = what })
    end
  end,
  radio_state = redraw,
  radio_error = function(d)
    if d.code ~= "CANCELLED" then
      ui.error(d, { logged = true, what = "radio" })
    end
  end,
  download_error = function(d)
    last_download_error = { code = d.code }
    vim.defer_fn(function()
      last_download_error = nil -- the generations waiting on the download fail with it right away
    end, 5000)
    ui.progress_done("download", "failed")
    ui.progress_changed(true)
    ui.error(d, { logged = true, progress = "download" })
  end,
}

---React to one engine event (after its subscribers have had it).
---@param event string
---@param data table
function M.react(event, data)
  local react = reactions[event]
  if react then
    react(data)
  end
end

return M
