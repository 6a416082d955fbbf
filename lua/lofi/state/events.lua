-- Engine events: subscribers and the generation state the UI reads. The event names (and their fields) are the
-- engine's, from the generated schema.
local schema = require("lofi.schema")

local M = {}

---Every event the engine sends, sorted.
M.names = vim.tbl_keys(schema.events)
table.sort(M.names)

---@type table<string, table<integer, fun(data: table)>>
local listeners = {}
local next_id = 0

---@alias lofi.JobState "queued"|"loading"|"generating"

---@class lofi.Progress
---@field track_id string
---@field state lofi.JobState queued (waiting, maybe for the model's download), loading the model, generating
---@field percent integer
---@field eta_sec number?
---@field stage string? ACE-Step: "diffusion" or "decode"
---@field prompt string?
---@field duration_sec number?
---@field backend string?
---@field order integer when it was accepted (the oldest job is shown first)

---@type table<string, lofi.Progress> Jobs accepted and not yet finished, by track id
M.active = {}

---@class lofi.Download
---@field percent integer
---@field variant string?

---The model download under way, if any.
---@type lofi.Download?
M.download = nil

---Whether the model download question is waiting for an answer.
M.awaiting_consent = false

---What is known about each track id (prompt, duration, backend), so messages can name a track, not a hash.
---@type table<string, {prompt: string?, duration_sec: number?, backend: string?}>
M.known = {}

---Track ids this editor asked for with generate() (autoplay plays these, never the radio's pieces).
---@type table<string, boolean>
M.requested = {}

---How a subscriber that fails is reported (an ERROR notification): set by the layer above (lua/lofi/reactions.lua
---hands it ui/messages.lua's notify), which this one may not require; until then, vim.notify.
---@type fun(message: string)
M.report_failure = function(message)
  vim.notify(message, vim.log.levels.ERROR)
end

local accepted = 0
local radio_stream = nil -- the stream id of the radio that plays

---Subscribe to an event; returns a function that unsubscribes.
---@param event string
---@param fn fun(data: table)
---@return fun()
function M.on(event, fn)
  if not vim.tbl_contains(M.names, event) then
    error(("lofi: unknown event %q (known: %s)"):format(event, table.concat(M.names, ", ")), 2)
  end
  vim.validate({ fn = { fn, "function" } })
  next_id = next_id + 1
  local id = next_id
  listeners[event] = listeners[event] or {}
  listeners[event][id] = fn
  return function()
    listeners[event][id] = nil
  end
end

---Remember what a track is (from a request, an event or the queue).
---@param track_id string
---@param info table prompt, duration_sec, backend (any of them)
function M.remember(track_id, info)
  local known = M.known[track_id] or {}
  for _, key in ipairs({ "prompt", "duration_sec", "backend" }) do
    if info[key] ~= nil then
      known[key] = info[key]
    end
  end
  M.known[track_id] = known
end

local function job(id, state)
  local j = M.active[id]
  if not j then
    accepted = accepted + 1
    j = { track_id = id, state = state, percent = 0, order = accepted }
    M.active[id] = j
  end
  for key, value in pairs(M.known[id] or {}) do
    j[key] = value
  end
  return j
end

---A request was accepted (queued): from now until it completes or fails, it is being generated.
---@param track_id string
---@param info table prompt, duration_sec, backend
function M.accepted(track_id, info)
  M.remember(track_id, info)
  job(track_id, "queued")
end

local function track_state(event, data)
  local id = data.track_id
  -- a generation_chunk's duration_sec is the chunk's (2 s), not the track's: it tells nothing about the track
  if id and event ~= "generation_chunk" and (data.prompt or data.duration_sec or data.backend) then
    M.remember(id, data)
  end
  if event == "generation_start" then
    local j = job(id, "generating")
    j.state, j.percent, j.eta_sec, j.stage = "generating", 0, nil, nil
  elseif event == "generation_progress" then
    local j = job(id, "generating")
    j.state, j.percent, j.eta_sec, j.stage = "generating", data.percent, data.eta_sec, data.stage
  elseif event == "model_load_progress" and id then
    local j = job(id, "loading")
    j.state, j.percent, j.stage = "loading", data.percent, data.stage
  elseif event == "generation_complete" or event == "generation_error" then
    M.active[id] = nil
    if next(M.active) == nil then
      M.awaiting_consent = false -- the jobs that waited for an answer are gone (declined)
    end
  elseif event == "radio_segment" or event == "radio_error" then
    M.active[data.stream_id] = nil -- the radio's model load (model_load_progress names its stream) is over
  elseif event == "radio_state" then
    if data.stream_id then
      radio_stream = data.stream_id
    end
    if not data.active and radio_stream then
      M.active[radio_stream] = nil
      radio_stream = nil
    end
  elseif event == "consent_required" then
    M.awaiting_consent = true
  elseif event == "download_progress" then
    M.awaiting_consent = false
    M.download = { percent = data.percent, variant = data.variant }
  elseif event == "download_complete" or event == "download_error" then
    M.download = nil
  end
end

---Deliver one event from the engine to the state and every subscriber.
---@param event string
---@param data table
function M.emit(event, data)
  track_state(event, data)
  for _, fn in pairs(listeners[event] or {}) do
    local ok, err = pcall(fn, data)
    if not ok then
      M.report_failure(("lofi: a %s handler failed: %s"):format(event, err))
    end
  end
end

local RANK = { generating = 1, loading = 2, queued = 3 }

---Jobs accepted and not finished: the running one first, then in the order they were accepted.
---@return lofi.Progress[]
function M.jobs()
  local list = vim.tbl_values(M.active)
  table.sort(list, function(a, b)
    if RANK[a.state] ~= RANK[b.state] then
      return RANK[a.state] < RANK[b.state]
    end
    return a.order < b.order
  end)
  return list
end

---The job that matters most now (generating, else loading, else the first queued), if any.
---@return lofi.Progress?
function M.current()
  return M.jobs()[1]
end

---Whether anything was accepted and has not finished (queued, waiting for the download, loading, generating).
---@return boolean
function M.busy()
  return next(M.active) ~= nil or M.download ~= nil
end

return M
