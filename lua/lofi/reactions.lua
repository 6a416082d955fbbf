-- What the plugin itself does on each engine event: notifications (start, completion, errors), the progress line,
-- statusline redraws, callbacks, autoplay (through the service's player), playback errors and the consent question;
-- and the path of every event, from the remote plugin to the state, the subscribers, these reactions and the queue
-- window (dispatch()). It hands the state layer, which may not require the ui, how to report a failing subscriber
-- or callback.
local callbacks = require("lofi.state.callbacks")
local config = require("lofi.core.config")
local consent = require("lofi.ui.consent")
local engine = require("lofi.core.engine")
local events = require("lofi.state.events")
local messages = require("lofi.ui.messages")
local player = require("lofi.state.player")
local queue = require("lofi.ui.queue")
local statusline = require("lofi.ui.statusline")
local wording = require("lofi.ui.wording")

local M = {}

---A subscriber or a callback that fails: an error notification (and the plugin log).
---@param message string
local function report_failure(message)
  messages.notify(message, vim.log.levels.ERROR)
end
events.report_failure = report_failure
callbacks.report_failure = report_failure

---The last download error shown, for a few seconds: the generations waiting on the download fail with the same
---error, which is not shown again.
local last_download_error = nil

local function percent_line(d, doing)
  local left = d.eta_sec and (" (%s left)"):format(wording.clock(d.eta_sec)) or ""
  return ("lofi: %s %q %d%%%s"):format(doing, (events.known[d.track_id] or {}).prompt or d.track_id, d.percent, left)
end

---A piece the radio composes (not asked for with generate()): no notifications, never autoplayed.
local function radio_piece(track_id)
  return not events.requested[track_id] and player.radio.active
end

---A playback or radio event: statuslines follow.
local function redraw()
  statusline.progress_changed(true)
end

---@type table<string, fun(data: table)>
local reactions = {
  generation_start = function(d)
    if radio_piece(d.track_id) then
      statusline.progress_changed()
      return
    end
    messages.notify("lofi: generating " .. wording.describe(d.track_id, d))
    statusline.progress_changed()
  end,
  generation_progress = function(d)
    local doing = d.stage == "decode" and "decoding" or "generating" -- ACE-Step's second stage turns latents into audio
    messages.progress(d.track_id, percent_line(d, doing), d.percent)
    statusline.progress_changed()
  end,
  generation_complete = function(d)
    messages.progress_done(d.track_id, "success")
    statusline.progress_changed(true)
    if radio_piece(d.track_id) then
      return -- the radio plays it
    end
    events.requested[d.track_id] = nil
    local took = d.cached and "from the cache" or ("in %s"):format(wording.clock(d.generation_time_sec))
    -- how long it took first: a line cut to the command line's width loses the end of the prompt, not that
    messages.notify(("lofi: ready %s: %s"):format(took, wording.describe(d.track_id, d)), vim.log.levels.INFO, { progress = d.track_id })
    callbacks.finish(d.track_id, nil, d) -- (autoplay: generate() asked the service to play it as it is composed)
  end,
  generation_error = function(d)
    events.requested[d.track_id] = nil
    if radio_piece(d.track_id) then
      messages.progress_done(d.track_id, "failed")
      statusline.progress_changed(true)
      return -- radio_state (mode error) says it
    end
    local cancelled = d.code == "CANCELLED"
    messages.progress_done(d.track_id, cancelled and "cancel" or "failed")
    statusline.progress_changed(true)
    if cancelled then
      messages.notify("lofi: cancelled " .. wording.describe(d.track_id), vim.log.levels.INFO, { progress = d.track_id })
    elseif not (last_download_error and last_download_error.code == d.code) then
      messages.error(d, { logged = true, what = wording.describe(d.track_id), progress = d.track_id })
    end -- else: the download's error, already shown once
    callbacks.finish(d.track_id, { code = d.code, message = d.message }, nil)
  end,
  model_load_progress = function(d)
    local what = d.stage == "verify" and "checking the model files" or "loading the model"
    messages.progress(d.track_id or "model", ("lofi: %s %d%%"):format(what, d.percent), d.percent)
    statusline.progress_changed()
  end,
  consent_required = function(d)
    statusline.progress_changed(true)
    consent.ask(d)
  end,
  download_progress = function(d)
    local text = "lofi: downloading %s %d%% (%.2f of %.2f GB)"
    local what = d.what or "the model"
    messages.progress("download", text:format(what, d.percent, d.bytes_downloaded / 1e9, d.bytes_total / 1e9), d.percent)
    statusline.progress_changed()
  end,
  download_complete = function(d)
    messages.progress_done("download", "success")
    statusline.progress_changed(true)
    messages.notify(("lofi: downloaded %s"):format(d.what or "the model"), vim.log.levels.INFO, { progress = "download" })
  end,
  service_warning = function(d)
    if d.log_dir then
      messages.use_log_dir(d.log_dir)
    end
    -- said once, and what to do is its point: shown whole (wrapped) when in Normal mode
    messages.notify(("lofi: %s: %s"):format(d.code, d.message), vim.log.levels.WARN, { full = true })
  end,
  playback_start = redraw,
  playback_state = redraw,
  playback_pause = redraw,
  playback_resume = redraw,
  playback_end = function(d)
    redraw()
    if d.reason == "error" then
      local what = d.track_id and ("playing " .. wording.describe(d.track_id)) or nil
      messages.error({ code = d.code or "PLAYBACK_FAILED", message = d.message or "the player failed" }, { logged = true, what = what })
    end
  end,
  radio_state = redraw,
  radio_error = function(d)
    if d.code ~= "CANCELLED" then
      messages.error(d, { logged = true, what = "radio" })
    end
  end,
  download_error = function(d)
    last_download_error = { code = d.code }
    vim.defer_fn(function()
      last_download_error = nil -- the generations waiting on the download fail with it right away
    end, 5000)
    messages.progress_done("download", "failed")
    statusline.progress_changed(true)
    -- the answer to the user's own :LofiDownload (or "Download"): what to do must be readable whole, in :messages too
    messages.error(d, { logged = true, progress = "download", full = true })
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

---One event from the remote plugin (require("lofi")._dispatch schedules it here): the view of what plays, then the
---state and the subscribers, then the reactions, then the queue window.
---@param event string
---@param data table
function M.dispatch(event, data)
  data = engine.denil(data)
  if type(data.message) == "string" then
    data.message = engine.for_lua(data.message)
  end
  player.on_event(event, data)
  events.emit(event, data)
  M.react(event, data)
  queue.refresh()
end

return M
