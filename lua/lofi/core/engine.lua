-- The bridge to the remote plugin (rplugin/python3/lofi), which owns the engine client, and the engine's answers as
-- the Lua side reads them (no vim.NIL, setup()'s option names in messages).
local config = require("lofi.core.config")

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

---An audio source as the service reads it: a cached track's id as it is, a file's path made absolute (the service's
---working directory is not the user's).
---@param value string?
---@return string?
function M.audio_source(value)
  if value == nil then
    return nil
  end
  if value:match("^%x+$") and #value == 16 then
    return value
  end
  return vim.fn.fnamemodify(vim.fn.expand(value), ":p")
end

---The engine names its settings as the command line does; from Lua, name the setup() options instead.
---@param message string?
---@return string?
function M.for_lua(message)
  if type(message) ~= "string" then
    return message
  end
  message = message:gsub("ace_step_model_dir %(CLI: %-%-model%-dir with %-%-backend ace%-step%)", "ace_step.dir in setup()")
  message = message:gsub("%-%-ace%-step%-model%-dir", "ace_step.dir"):gsub("ace_step_model_dir", "ace_step.dir")
  message = message:gsub("run `lofi download %-%-variant [%w%-]+` or pass %-%-model%-dir", "run :LofiDownload or set model.dir in setup()")
  message = message:gsub(":LofiDownload %(or `lofi download`%)", ":LofiDownload"):gsub(" %(%-%-model%-dir%)", " in setup()")
  message = message:gsub(":LofiDownload %(Neovim%) or `lofi download` %(terminal%)", ":LofiDownload")
  message = message:gsub("set player_command", "set player.cmd in setup()"):gsub("player_command", "player.cmd")
  message = message:gsub("radio_window_sec", "radio.window_sec"):gsub("radio_context_sec", "radio.context_sec")
  message = message:gsub("radio_piece_sec", "radio.piece_sec"):gsub("crossfade_sec must", "player.crossfade_sec must")
  return message
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
