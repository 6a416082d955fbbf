-- The callbacks of generate(): each runs once, when its track is ready or has failed.
local M = {}

---How a callback that fails is reported (an ERROR notification): set by the layer above (lua/lofi/reactions.lua
---hands it ui/messages.lua's notify), which this one may not require; until then, vim.notify.
---@type fun(message: string)
M.report_failure = function(message)
  vim.notify(message, vim.log.levels.ERROR)
end

---@type table<string, fun(err: lofi.Error?, track: table?)[]>
local waiting = {}

---Run `callback(err, track)` when the job of `track_id` finishes.
---@param track_id string
---@param callback fun(err: lofi.Error?, track: table?)
function M.add(track_id, callback)
  waiting[track_id] = waiting[track_id] or {}
  table.insert(waiting[track_id], callback)
end

---The job of `track_id` finished: run (and forget) its callbacks; one that fails is reported, not raised.
---@param track_id string
---@param err lofi.Error?
---@param track table?
function M.finish(track_id, err, track)
  local callbacks = waiting[track_id]
  waiting[track_id] = nil
  for _, callback in ipairs(callbacks or {}) do
    local ok, cb_err = pcall(callback, err, track)
    if not ok then
      M.report_failure("lofi: generate callback failed: " .. tostring(cb_err))
    end
  end
end

return M
