-- Playback through the service's player (lofi_engine/service/playback.py): a player process of its own mixes the
-- tracks (crossfade, loop, volume) and feeds mpv; Neovim spawns nothing. This module sends the player's requests and
-- keeps the Lua side's view of what plays, from the playback and radio events (the statusline reads it; it never
-- sends a request). `status()` in init.lua asks the service for the exact state (position, volume, playlist).
local config = require("lofi.config")
local engine = require("lofi.engine")

local M = {}

---@class lofi.Playing
---@field state "starting"|"playing"|"paused" what the player does
---@field track_id string the track (or radio segment) heard now
---@field prompt string?
---@field radio boolean? a radio segment or piece

---What plays now, as the events told it (nil: nothing); read-only outside this module.
---@type lofi.Playing?
M.current = nil

---@class lofi.RadioState
---@field active boolean
---@field mode "starting"|"live"|"rotation"|"error"|"stopped"
---@field strategy string?
---@field prompt string?
---@field realtime_factor number? generation seconds per second of audio (below 1: it keeps up)
---@field pieces integer?

---The radio as its last radio_state event (or request) described it.
---@type lofi.RadioState
M.radio = { active = false, mode = "stopped" }

---The volume last set (setup's player.volume until a volume() call).
---@type integer?
M.level = nil

-- Tracks started and not yet ended, by id: a track that loops starts again before its first pass ends (the tail
-- crossfades into the head), and in a crossfade the next track starts before the last one ends.
local open = {}

---The volume the next volume_up/down starts from.
---@return integer
function M.volume_level()
  return M.level or math.floor(config.options.player.volume)
end

---Translate an engine error for Lua (setting names → setup() options).
---@param err lofi.Error?
---@return lofi.Error?
local function for_lua(err)
  if err and type(err.message) == "string" then
    err.message = require("lofi.ui").for_lua(err.message)
  end
  return err
end

---One request to the service's player, radio or library; `result, err` (err = {code, message}).
---@param method string
---@param params table?
---@return any result, lofi.Error? err
function M.request(method, params)
  local result, err = engine.request(method, params)
  return result, for_lua(err)
end

---Play tracks (ids; replaces the playlist). Nil: the most recently played (or made) track.
---@param ids string[]?
---@return table? result, lofi.Error? err
function M.play(ids)
  local params = ids and { track_ids = ids } or nil
  local result, err = M.request("play", params)
  if result then
    open = {}
    local info = require("lofi.events").known[result.track_id] or {}
    M.current = { state = "starting", track_id = result.track_id, prompt = info.prompt }
  end
  return result, err
end

---Stop playback; returns what was playing (nil when nothing was).
---@return lofi.Playing? was, lofi.Error? err
function M.stop()
  local was = M.current
  local _, err = M.request("stop")
  if err then
    return nil, err
  end
  M.current, open = nil, {}
  return was
end

---Forget what plays (the service's player is gone: Neovim exits, the remote plugin shut it down).
function M.reset()
  M.current, open = nil, {}
  M.radio = { active = false, mode = "stopped" }
end

---Update the view from one playback or radio event (before the subscribers and reactions see it).
---@param event string
---@param data table
function M.on_event(event, data)
  local id = data.track_id
  if event == "playback_start" and id then
    open[id] = (open[id] or 0) + 1
    local info = require("lofi.events").known[id] or {}
    local paused = M.current and M.current.state == "paused"
    M.current = { state = paused and "paused" or "playing", track_id = id, prompt = data.prompt or info.prompt, radio = data.radio }
  elseif event == "playback_pause" and M.current then
    M.current.state = "paused"
  elseif event == "playback_resume" and M.current then
    M.current.state = "playing"
  elseif event == "playback_end" and id then
    open[id] = (open[id] or 1) - 1
    if open[id] <= 0 then
      open[id] = nil
    end
    if data.reason == "stopped" or data.reason == "error" then
      if M.current and (M.current.track_id == id or data.reason == "error") then
        M.current, open = nil, {}
      end
    elseif M.current and M.current.track_id == id and not open[id] then
      -- the track that was heard ended with nothing after it (a crossfade would have started the next one first)
      M.current = nil
    end
  elseif event == "radio_state" then
    M.radio = {
      active = data.active == true,
      mode = data.mode,
      strategy = data.strategy,
      prompt = data.prompt,
      realtime_factor = data.realtime_factor,
      pieces = data.pieces,
    }
  end
end

return M
