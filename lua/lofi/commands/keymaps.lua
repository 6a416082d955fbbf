-- The <Plug>(lofi-…) mappings (always defined: they take no key of their own), which run the commands. Their names,
-- and setup's opt-in keys that map to them, are lua/lofi/ui/keymaps.lua's.
local keymaps = require("lofi.ui.keymaps")
local player = require("lofi.commands.player")
local player_state = require("lofi.state.player")

local M = {}

---The volume `step` away from the current one, clamped to 0–100.
---@param step integer
function M.volume_by(step)
  player.volume({ args = (step > 0 and "+" or "") .. step, fargs = { (step > 0 and "+" or "") .. step } })
end

local function radio()
  if player_state.radio.active then
    vim.cmd("LofiRadio stop")
  else
    vim.cmd("LofiRadio")
  end
end

---Define the <Plug> mappings (normal mode).
function M.define()
  for name, action in pairs(keymaps.actions) do
    local rhs
    if action.command then
      rhs = "<Cmd>" .. action.command .. "<CR>"
    elseif name == "radio" then
      rhs = radio
    elseif name == "volume_up" then
      rhs = function()
        M.volume_by(keymaps.VOLUME_STEP)
      end
    else
      rhs = function()
        M.volume_by(-keymaps.VOLUME_STEP)
      end
    end
    vim.keymap.set("n", action.plug, rhs, { silent = true, desc = action.desc })
  end
end

return M
