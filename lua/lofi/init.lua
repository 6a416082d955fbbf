-- lofi.nvim: compose music locally from a text prompt and play it while you code.
local config = require("lofi.config")
local engine = require("lofi.engine")
local events = require("lofi.events")
local player = require("lofi.player")
local stream = require("lofi.stream")
local ui = require("lofi.ui")

local M = {}

---@type table<string, fun(err: lofi.Error?, track: table?)[]>
local callbacks = {}
local consent = { asking = false, declined = false }

---@param opts lofi.Config?
function M.setup(opts)
  config.setup(opts)
end

---@class lofi.GenerateOpts
---@field prompt string What the music should sound like
---@field duration_sec number? 5 to 120 with musicgen, 10 to 240 with ace-step (default: setup's duration_sec)
---@field backend "musicgen"|"ace-step"|nil Which model composes it (default: setup's backend)
---@field seed integer? For reproducible output (default: random, returned)
---@field priority "normal"|"high"|nil High goes ahead of the queued jobs

---Queue a generation; returns at once with {track_id, status, position, seed}. `callback(err, track)` runs when
---the track is ready (track = the generation_complete fields) or failed (err = {code, message}).
---@param opts lofi.GenerateOpts
---@param callback fun(err: lofi.Error?, track: table?)?
---@return table? result, lofi.Error? err
function M.generate(opts, callback)
  vim.validate({ opts = { opts, "table" }, callback = { callback, "function", true } })
  local result, err = engine.request("generate", {
    prompt = opts.prompt,
    duration_sec = opts.duration_sec or config.options.duration_sec,
    seed = opts.seed,
    priority = opts.priority,
    backend = opts.backend or config.options.backend,
  })
  if err then
    ui.error(err)
    if callback then
      vim.schedule(function()
        callback(err, nil)
      end)
    end
    return nil, err
  end
  if callback then
    callbacks[result.track_id] = callbacks[result.track_id] or {}
    table.insert(callbacks[result.track_id], callback)
  end
  if result.status == "queued" and result.position > 0 then
    ui.notify(("lofi: queued at position %d"):format(result.position))
  end
  return result
end

---Whether a track is being generated now.
---@return boolean
function M.is_generating()
  return events.current() ~= nil
end

---Subscribe to generation_start / generation_progress / generation_complete / generation_error (and the
---model and download events); returns a function that unsubscribes.
---@param event string
---@param fn fun(data: table)
---@return fun()
function M.on(event, fn)
  return events.on(event, fn)
end

---The running and pending jobs: {running = job?, pending = {job…}} with position, percent, eta_sec.
---@return table? queue, lofi.Error? err
function M.queue()
  return engine.request("queue")
end

---Cancel a generation (default: the last one queued, else the running one); its callback gets err.code
---CANCELLED. A queued job is dropped at once, a running ACE-Step job stops within a step; a MusicGen
---generation that has started cannot be stopped (FR-009).
---@param track_id string?
---@return table? result, lofi.Error? err
function M.cancel(track_id)
  if not track_id then
    local queue = M.queue() or {}
    local last = (queue.pending and queue.pending[#queue.pending]) or queue.running
    if not last then
      ui.notify("lofi: nothing is being generated or waiting", vim.log.levels.WARN)
      return nil, { code = "INVALID_PARAMS", message = "nothing is being generated or waiting" }
    end
    track_id = last.track_id
  end
  local result, err = engine.request("cancel", { track_id = track_id })
  if err then
    ui.error(err)
  end
  return result, err
end

---Cached tracks, newest first.
---@return table[] tracks, lofi.Error? err
function M.tracks()
  local tracks, err = engine.request("tracks")
  tracks = tracks or {}
  table.sort(tracks, function(a, b)
    return (a.created_at or 0) > (b.created_at or 0)
  end)
  return tracks, err
end

---Play a track (its table or id; default: the newest cached track).
---@param track table|string|nil
---@return boolean ok, string? err
function M.play(track)
  local path, id
  if type(track) == "table" then
    path, id = track.path, track.track_id
  else
    local tracks, err = M.tracks()
    if err then
      ui.error(err)
      return false, err.message
    end
    for _, t in ipairs(tracks) do
      if track == nil or t.track_id == track then
        path, id = t.path, t.track_id
        break
      end
    end
    if not path then
      local message = track and ("no cached track " .. track) or "no track yet: generate one with :LofiGenerate"
      ui.notify("lofi: " .. message, vim.log.levels.WARN)
      return false, message
    end
  end
  local ok, err = player.play(path, id)
  if not ok then
    ui.notify("lofi: " .. err, vim.log.levels.ERROR)
    return false, err
  end
  if id then
    engine.request("track_played", { track_id = id })
  end
  return true
end

---Stop playback.
function M.stop()
  player.stop()
end

---What lofi is doing: generating (with progress), playing, and the engine's own status.
---@return table
function M.status()
  local engine_status, err = engine.request("status")
  return {
    generating = M.is_generating(),
    current = events.current(),
    playing = player.current and { path = player.current.path, track_id = player.current.track_id } or nil,
    engine = engine_status,
    error = err,
  }
end

---Statusline component: "" when idle, "♪ 45% 0:35" while generating.
---@return string
function M.statusline()
  return ui.statusline()
end

---Ask the user whether to download the model, then download it with visible progress.
---@param on_answer fun(agreed: boolean)?
function M.download(on_answer)
  local status = engine.request("status") or {}
  if status.model_available then
    ui.notify(("lofi: the %s model is already available"):format(status.variant))
    return
  end
  M._ask_consent({ variant = status.variant or "configured" }, on_answer)
end

---@param data table the consent_required event (variant, size_bytes)
---@param on_answer fun(agreed: boolean)?
function M._ask_consent(data, on_answer)
  if consent.declined then
    engine.request("download", { consent = false })
    return
  end
  if consent.asking then
    return
  end
  consent.asking = true
  local size = data.size_bytes and (" (%.1f GB)"):format(data.size_bytes / 1e9) or ""
  local prompt = ("lofi.nvim: download the MusicGen %s model%s from HuggingFace?"):format(data.variant, size)
  vim.ui.select({ "Download", "Not now" }, { prompt = prompt }, function(choice)
    consent.asking = false
    local agreed = choice == "Download"
    consent.declined = not agreed
    local _, err = engine.request("download", { consent = agreed })
    if err then
      ui.error(err)
    elseif agreed then
      ui.notify("lofi: downloading the model…", vim.log.levels.INFO, true)
    end
    if on_answer then
      on_answer(agreed)
    end
  end)
end

local function finish(track_id, err, track)
  local waiting = callbacks[track_id]
  callbacks[track_id] = nil
  for _, cb in ipairs(waiting or {}) do
    local ok, cb_err = pcall(cb, err, track)
    if not ok then
      vim.notify("lofi: generate callback failed: " .. tostring(cb_err), vim.log.levels.ERROR)
    end
  end
end

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
    finish(d.track_id, nil, d)
    if stream.on_complete(d) then
      engine.request("track_played", { track_id = d.track_id })
    elseif config.options.autoplay then
      M.play(d)
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
    finish(d.track_id, { code = d.code, message = d.message }, nil)
  end,
  model_load_progress = function(d)
    local what = d.stage == "verify" and "checking the model files" or "loading the model"
    ui.notify(("lofi: %s %d%%"):format(what, d.percent), vim.log.levels.INFO, true)
  end,
  consent_required = function(d)
    M._ask_consent(d)
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

---Called by the remote plugin for every engine event (through nvim.async_call).
---@param event string
---@param data table
function M._dispatch(event, data)
  data = engine.denil(data)
  events.emit(event, data)
  local react = reactions[event]
  if react then
    react(data)
  end
end

return M
