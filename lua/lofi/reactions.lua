-- What the plugin itself does on each engine event: notifications, statusline redraws, callbacks, streaming,
-- autoplay and the consent question.
local callbacks = require("lofi.callbacks")
local config = require("lofi.config")
local consent = require("lofi.consent")
local engine = require("lofi.engine")
local stream = require("lofi.stream")
local ui = require("lofi.ui")

local M = {}

---@type table<string, fun(data: table)>
local reactions = {
  generation_start = function(d)
    ui.notify(("lofi: generating %q…"):format(d.prompt or d.track_id), vim.log.levels.INFO, true)
    ui.progress_changed()
  end,
  generation_progress = function(d)
    local doing = d.stage == "decode" and "decoding" or "generating" -- ACE-Step's second stage turns latents into audio
    ui.notify(("lofi: %s %d%% (%s left)"):format(doing, d.percent, ui.clock(d.eta_sec)), vim.log.levels.INFO, true)
    ui.progress_changed()
    stream.on_progress(d)
  end,
  generation_chunk = function(d)
    stream.on_chunk(d)
  end,
  generation_complete = function(d)
    ui.progress_changed()
    ui.notify(("lofi: %q is ready (%ss)"):format(d.prompt, d.duration_sec), vim.log.levels.INFO, true)
    callbacks.finish(d.track_id, nil, d)
    if stream.on_complete(d) then
      engine.request("track_played", { track_id = d.track_id })
    elseif config.options.autoplay then
      require("lofi").play(d)
    end
  end,
  generation_error = function(d)
    stream.on_error(d)
    ui.progress_changed()
    if d.code == "CANCELLED" then
      ui.notify("lofi: cancelled " .. d.track_id)
    else
      ui.error(d)
    end
    callbacks.finish(d.track_id, { code = d.code, message = d.message }, nil)
  end,
  model_load_progress = function(d)
    local what = d.stage == "verify" and "checking the model files" or "loading the model"
    ui.notify(("lofi: %s %d%%"):format(what, d.percent), vim.log.levels.INFO, true)
  end,
  consent_required = function(d)
    consent.ask(d)
  end,
  download_progress = function(d)
    local text = "lofi: downloading the model %d%% (%.2f of %.2f GB)"
    ui.notify(text:format(d.percent, d.bytes_downloaded / 1e9, d.bytes_total / 1e9), vim.log.levels.INFO, true)
  end,
  download_complete = function()
    ui.notify("lofi: the model is downloaded", vim.log.levels.INFO, true)
  end,
  download_error = function(d)
    ui.error(d)
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
