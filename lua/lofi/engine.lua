-- The bridge to the remote plugin (rplugin/python3/lofi), which owns the engine client.
local config = require("lofi.config")

local M = {}

---The settings of the last request that reached the remote plugin (its engine client exists from then on).
---@type table?
local sent = nil

---JSON nulls arrive as vim.NIL; Lua code wants plain nil (absent keys).
---@param value any
---@return any
function M.denil(value)
  if value == vim.NIL then
    return nil
  end
  if type(value) == "table" then
    for k, v in pairs(value) do
      value[k] = M.denil(v)
    end
  end
  return value
end

---@class lofi.Error
---@field code string One of the spec's error codes (QUEUE_FULL, INVALID_DURATION, MODEL_NOT_FOUND, …)
---@field message string

---Send one request; never blocks on generation (the engine answers at once).
---@param method string
---@param params table?
---@return any result, lofi.Error? err
function M.request(method, params)
  if not config.engine_python() then
    return nil,
      { code = "NOT_INSTALLED", message = ("the plugin's environment is missing: run `make install` in %s"):format(config.root) }
  end
  if vim.fn.exists("*LofiRequest") == 0 and vim.fn.exists("#FuncUndefined#LofiRequest") == 0 then
    return nil,
      {
        code = "NOT_REGISTERED",
        message = "the lofi remote plugin is not registered: is plugin/lofi.lua on 'runtimepath'? (see :checkhealth lofi)",
      }
  end
  if params == nil or vim.tbl_isempty(params) then
    params = vim.empty_dict()
  end
  local settings = config.remote_settings()
  local ok, reply = pcall(vim.fn.LofiRequest, settings, method, params)
  if not ok then
    return nil, { code = "PLUGIN_ERROR", message = "the python3 host failed: " .. tostring(reply) }
  end
  sent = settings
  if type(reply) ~= "table" then
    return nil, { code = "PLUGIN_ERROR", message = "unexpected reply from the remote plugin" }
  end
  reply = M.denil(reply)
  if reply.error then
    return nil, reply.error
  end
  return reply.result
end

---Whether the engine client exists and the settings differ from those it was last given (the next request hands
---it the new ones; jobs already queued keep theirs).
---@return boolean
function M.settings_changed()
  return sent ~= nil and not vim.deep_equal(sent, config.remote_settings())
end

return M
