-- Playback through the service's player (lofi_engine/service/playback.py): a player process of its own mixes the
-- tracks (crossfade, loop, volume) and feeds mpv; Neovim spawns nothing. This module sends the player's and the
-- radio's requests (play(), stop(), volume(), radio(), radio_stop() are the Lua API's) and keeps the Lua side's view
-- of what plays: the service's own, from its playback_state and radio_state events (the statusline reads it; it never
-- sends a request). The service owns the rules (volume range, what a stop or a track picked by hand does to the
-- radio); this module passes values on and keeps what the service answers.
local config = require("lofi.core.config")
local engine = require("lofi.core.engine")
local events = require("lofi.state.events")

local M = {}

---@class lofi.Playing
---@field state "starting"|"playing"|"paused"|"buffering" what the player does (buffering: waiting for a track being composed)
---@field track_id string the track (or radio segment) heard now
---@field prompt string?
---@field radio boolean? a radio segment or piece
---@field position_sec number? where it was when the service last said (see position())
---@field duration_sec number?
---@field volume integer?
---@field loop boolean?
---@field shuffle boolean?
---@field at integer? when the service said it (vim.uv.now())

---What plays now, as the service's last playback_state said (nil: nothing); read-only outside this module.
---@type lofi.Playing?
M.current = nil

---@class lofi.RadioState
---@field active boolean
---@field mode "starting"|"live"|"rotation"|"error"|"waiting for disk space"|"stopped"
---@field strategy string?
---@field prompt string?
---@field realtime_factor number? generation seconds per second of new music (below 1: it keeps up)
---@field pieces integer?

---The radio as its last radio_state event (or request) described it.
---@type lofi.RadioState
M.radio = { active = false, mode = "stopped" }

---The volume the service last reported (setup's player.volume until it has).
---@type integer?
M.level = nil

---The volume now.
---@return integer
function M.volume_level()
  return M.level or math.floor(config.options.player.volume)
end

---Seconds into the track playing now: the service's last position, moved on by the time since when it plays.
---@return number?
function M.position()
  local c = M.current
  if not c or not c.position_sec then
    return nil
  end
  local moved = c.state == "playing" and c.at and (vim.uv.now() - c.at) / 1000 or 0
  return math.min(c.position_sec + moved, c.duration_sec or math.huge)
end

---Translate an engine error for Lua (setting names → setup() options).
---@param err lofi.Error?
---@return lofi.Error?
local function for_lua(err)
  if err and type(err.message) == "string" then
    err.message = engine.for_lua(err.message)
  end
  return err
end

---A track id from a track table or an id (nil stays nil).
---@param track table|string|nil
---@return string?
function M.id_of(track)
  if type(track) == "table" then
    return track.track_id
  end
  return track
end

---One request to the service's player, radio or library; `result, err` (err = {code, message}).
---@param method string
---@param params table?
---@return any result, lofi.Error? err
function M.request(method, params)
  local result, err = engine.request(method, params)
  return result, for_lua(err)
end

---Play a track (its table or id; a list of them plays as the playlist; nil: the most recently played or made
---cached track), replacing the playlist (and the radio: the service's rule): require("lofi").play(). With `queue`,
---it goes after the playlist when something plays (autoplay), and plays now when nothing does.
---@param track table|string|string[]|nil
---@param queue boolean?
---@return table? result, lofi.Error? err result: {track_id, prompt, queued}
function M.play(track, queue)
  local ids = nil
  if type(track) == "table" and vim.islist(track) and #track > 0 then
    ids = vim.tbl_map(M.id_of, track)
  elseif track ~= nil then
    local id = M.id_of(track)
    if type(id) ~= "string" then
      return nil, { code = "INVALID_PARAMS", message = ("play needs a track id or a track, not %s"):format(vim.inspect(track)) }
    end
    ids = { id }
  end
  if type(track) == "table" and not vim.islist(track) and track.track_id then
    events.remember(track.track_id, track)
  end
  local result, err = M.request(queue and "enqueue" or "play", ids and { track_ids = ids } or nil)
  if result and not result.queued then
    M.current = { state = "starting", track_id = result.track_id, prompt = result.prompt, duration_sec = result.duration_sec, at = vim.uv.now() }
  end
  return result, err
end

---Stop playback and the radio: require("lofi").stop(). Returns what was playing ({track_id, prompt, radio, …}), or
---nil when nothing was.
---@return table? was, lofi.Error? err
function M.stop()
  local radio = M.radio.active and M.radio.prompt
  local result, err = M.request("stop")
  if err then
    return nil, err
  end
  M.current = nil
  local was = result.was ~= vim.NIL and result.was or nil
  if radio then
    return vim.tbl_extend("force", was or {}, { radio = true, prompt = radio })
  end
  return was
end

---Set the volume: a level from 0 to 100, or `{ change = N }` to move it by N (stopping at 0 and 100):
---require("lofi").volume(). The answer is the service's: {volume, limited}.
---@param level number|{change: number}
---@return table? result, lofi.Error? err
function M.volume(level)
  local params = type(level) == "table" and { change = level.change } or { level = level }
  local result, err = M.request("volume", params)
  if result then
    M.level = result.volume
  end
  return result, err
end

---Add tracks (ids or tables) at the end of the playlist: require("lofi").playlist.add().
---@param tracks table|string|string[]
---@return table? result, lofi.Error? err
function M.playlist_add(tracks)
  if type(tracks) == "table" and vim.islist(tracks) then
    return M.request("playlist_add", { track_ids = vim.tbl_map(M.id_of, tracks) })
  end
  return M.request("playlist_add", { track_id = M.id_of(tracks) })
end

---Start or steer the radio: require("lofi").radio().
---@param opts lofi.RadioOpts|string
---@return table? state, lofi.Error? err
function M.start_radio(opts)
  if type(opts) == "string" then
    opts = { prompt = opts }
  end
  vim.validate({ opts = { opts, "table" } })
  local steering = M.radio.active and opts.prompt and opts.strategy == nil and opts.presets == nil and opts.backend == nil and opts.seed == nil
    and opts.bpm == nil and opts.key == nil and opts.time_signature == nil and opts.from == nil
  local result, err
  if steering then
    result, err = M.request("radio_steer", { prompt = opts.prompt })
  else
    result, err = M.request("radio_start", {
      prompt = opts.prompt, strategy = opts.strategy, presets = opts.presets, backend = opts.backend, seed = opts.seed,
      bpm = opts.bpm, key = opts.key, time_signature = opts.time_signature, from = engine.audio_source(opts.from),
    })
  end
  if result then
    -- at once (the radio_state event follows): a piece made before, which the radio takes from the cache, must not
    -- be autoplayed as an ordinary track
    M.on_event("radio_state", result)
  end
  return result, err
end

---Stop the radio: require("lofi").radio_stop().
---@return table? state, lofi.Error? err
function M.radio_stop()
  local result, err = M.request("radio_stop")
  if result then
    M.on_event("radio_state", { active = false, mode = "stopped" })
  end
  return result, err
end

---Forget what plays (the service's player is gone: Neovim exits, the remote plugin shut it down).
function M.reset()
  M.current = nil
  M.radio = { active = false, mode = "stopped" }
end

---Update the view from one playback or radio event (before the subscribers and reactions see it).
---@param event string
---@param data table
function M.on_event(event, data)
  if event == "playback_state" then
    if data.state == "stopped" or not data.track_id then
      M.current = nil
    else
      local info = events.known[data.track_id] or {}
      M.current = {
        state = data.state, track_id = data.track_id, prompt = data.prompt or info.prompt, radio = data.radio,
        position_sec = data.position_sec, duration_sec = data.duration_sec, volume = data.volume, loop = data.loop,
        shuffle = data.shuffle, at = vim.uv.now(),
      }
    end
    M.level = data.volume or M.level
  elseif event == "playback_start" and data.track_id and M.current and M.current.track_id ~= data.track_id then
    -- the next track began (its playback_state follows): show it at once
    M.current = vim.tbl_extend("force", M.current, { track_id = data.track_id, prompt = data.prompt, radio = data.radio,
      position_sec = 0, duration_sec = data.duration_sec, at = vim.uv.now() })
  elseif (event == "playback_pause" or event == "playback_resume") and M.current and M.current.track_id == data.track_id then
    -- at once (its playback_state follows): the position stops, or goes on, from here
    M.current.position_sec, M.current.at = M.position(), vim.uv.now()
    M.current.state = event == "playback_pause" and "paused" or "playing"
  elseif event == "playback_end" and (data.reason == "stopped" or data.reason == "error") then
    M.current = nil -- at once (its playback_state follows); a track that ends otherwise may go on (a loop, a replay)
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
