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

---@class lofi.Progress
---@field track_id string
---@field percent integer
---@field eta_sec number?
---@field prompt string?

---@type table<string, lofi.Progress> Jobs started and not yet finished, by track id
M.active = {}

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

local function track_state(event, data)
  local id = data.track_id
  if event == "generation_start" then
    M.active[id] = { track_id = id, percent = 0, eta_sec = nil, prompt = data.prompt }
  elseif event == "generation_progress" and M.active[id] then
    M.active[id].percent = data.percent
    M.active[id].eta_sec = data.eta_sec
  elseif event == "generation_complete" or event == "generation_error" then
    M.active[id] = nil
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
      vim.notify(("lofi: a %s handler failed: %s"):format(event, err), vim.log.levels.ERROR)
    end
  end
end

---The job that is generating now, if any.
---@return lofi.Progress?
function M.current()
  local _, job = next(M.active)
  return job
end

return M
