-- What the plugin itself does on each engine event: notifications (start, completion, errors), the progress line,
-- statusline redraws, callbacks, streaming, autoplay and the consent question.
local callbacks = require("lofi.callbacks")
local config = require("lofi.config")
local consent = require("lofi.consent")
local engine = require("lofi.engine")
local events = require("lofi.events")
local stream = require("lofi.stream")
local ui = require("lofi.ui")

local M = {}

local function percent_line(d, doing)
  local left = d.eta_sec and (" (%s left)"):format(ui.clock(d.eta_sec)) or ""
  return ("lofi: %s %q %d%%%s"):format(doing, (events.known[d.track_id] or {}).prompt or d.track_id, d.percent, left)
end

---@type table<string, fun(data: table)>
local reactions = {
  generation_start = function(d)
    ui.notify("lofi: generating " .. ui.describe(d.track_id, d))
    ui.progress_changed()
  end,
  generation_progress = function(d)
    local doing = d.stage == "decode" and "decoding" or "generating" -- ACE-Step's second stage turns latents into audio
    ui.progress(d.track_id, percent_line(d, doing), d.percent)
    ui.progress_changed()
    stream.on_progress(d)
  end,
  generation_chunk = function(d)
    stream.on_chunk(d)
  end,
  generation_complete = function(d)
    ui.progress_done(d.track_id, "success")
    ui.progress_changed(true)
    local took = d.cached and "from the cache" or ("in %s"):format(ui.clock(d.generation_time_sec))
    ui.notify(("lofi: ready %s, %s"):format(ui.describe(d.track_id, d), took), vim.log.levels.INFO, { progress = d.track_id })
    callbacks.finish(d.track_id, nil, d)
    if stream.on_complete(d) then
      engine.request("track_played", { track_id = d.track_id })
    elseif config.options.autoplay then
      local ok, err = require("lofi").play(d)
      if not ok then
        ui.notify("lofi: " .. err, vim.log.levels.ERROR)
      end
    end
  end,
  generation_error = function(d)
    stream.on_error(d)
    local cancelled = d.code == "CANCELLED"
    ui.progress_done(d.track_id, cancelled and "cancel" or "failed")
    ui.progress_changed(true)
    if cancelled then
      ui.notify("lofi: cancelled " .. ui.describe(d.track_id), vim.log.levels.INFO, { progress = d.track_id })
    else
      ui.error(d, { logged = true, what = ui.describe(d.track_id), progress = d.track_id })
    end
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
  download_error = function(d)
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
