-- The track library (lofi_engine/service/library.py): the cached tracks, what is known of each, and the requests
-- that list, delete, measure and export them (the Lua API's tracks(), delete(), clear(), stats(), save() and
-- playlist.list()).
local engine = require("lofi.core.engine")
local events = require("lofi.state.events")
local player = require("lofi.state.player")

local M = {}

---Cached tracks, most recently played first (a track counts as played when it is made); each is remembered.
---@return table[] tracks, lofi.Error? err
function M.tracks()
  local tracks, err = engine.request("tracks")
  for _, t in ipairs(tracks or {}) do
    events.remember(t.track_id, t)
  end
  return tracks or {}, err
end

---Delete a cached track.
---@param track table|string
---@return table? result, lofi.Error? err
function M.delete(track)
  return player.request("cache_delete", { track_id = player.id_of(track) })
end

---Delete every cached track but those playing or being generated.
---@return table? result, lofi.Error? err
function M.clear()
  return player.request("cache_clear")
end

---The track cache's size and dates.
---@return table? stats, lofi.Error? err
function M.stats()
  return player.request("cache_stats")
end

---Export a track to `path` (`~` and variables expanded, made absolute).
---@param track table|string
---@param path string
---@param format string?
---@param opts {overwrite: boolean?}?
---@return table? result, lofi.Error? err
function M.save(track, path, format, opts)
  local params = { track_id = player.id_of(track), path = path, format = format }
  if opts and opts.overwrite then
    params.overwrite = true
  end
  if opts and opts.make_dirs then
    params.make_dirs = true
  end
  if type(path) == "string" then
    params.path = vim.fn.fnamemodify(vim.fn.expand(path), ":p")
  end
  return player.request("save", params)
end

---The playlist in order: `{track_id, prompt, duration_sec, backend}` each (radio segments: track_id and prompt).
---@return table[]? list, lofi.Error? err
function M.playlist()
  local state, err = player.request("playback")
  if not state then
    return nil, err
  end
  local known = {}
  for _, t in ipairs((M.tracks())) do
    known[t.track_id] = t
  end
  return vim.tbl_map(function(id)
    local t = known[id] or events.known[id] or {}
    return { track_id = id, prompt = t.prompt, duration_sec = t.duration_sec, backend = t.backend }
  end, state.playlist or {})
end

return M
