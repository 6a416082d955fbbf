-- The <Plug>(lofi-…) mappings' names and setup's opt-in `keymaps` table, which maps the user's keys to them. No key
-- is mapped unless setup() asks for it. The <Plug> mappings themselves run commands: lua/lofi/commands/keymaps.lua.
local config = require("lofi.core.config")

local M = {}

---The volume step of <Plug>(lofi-volume-up) and <Plug>(lofi-volume-down).
M.VOLUME_STEP = 10

---setup()'s keymaps names → the <Plug> mapping and what it does.
M.actions = {
  toggle = { plug = "<Plug>(lofi-toggle)", desc = "lofi: pause or resume", command = "LofiToggle" },
  pause = { plug = "<Plug>(lofi-pause)", desc = "lofi: pause", command = "LofiPause" },
  resume = { plug = "<Plug>(lofi-resume)", desc = "lofi: resume", command = "LofiResume" },
  skip = { plug = "<Plug>(lofi-skip)", desc = "lofi: next track", command = "LofiSkip" },
  stop = { plug = "<Plug>(lofi-stop)", desc = "lofi: stop playback and the radio", command = "LofiStop" },
  radio = { plug = "<Plug>(lofi-radio)", desc = "lofi: start the radio (asks for a prompt), or stop it when it plays" },
  volume_up = { plug = "<Plug>(lofi-volume-up)", desc = "lofi: volume up" },
  volume_down = { plug = "<Plug>(lofi-volume-down)", desc = "lofi: volume down" },
  tracks = { plug = "<Plug>(lofi-tracks)", desc = "lofi: pick a cached track", command = "LofiTracks" },
  generate = { plug = "<Plug>(lofi-generate)", desc = "lofi: generate a track (asks for a prompt)", command = "LofiGenerate" },
}

-- setup() knows these names (and no others) under `keymaps`.
config.known.keymaps = vim.tbl_keys(M.actions)
table.sort(config.known.keymaps)

---The keys setup() mapped last time (removed when setup() is called again).
local mapped = {}

---Map setup()'s keymaps: `{toggle = "<leader>mp", skip = "<leader>mn", …}`; false or absent: no mapping.
---@param keymaps table<string, string|false>
function M.apply(keymaps)
  for _, lhs in ipairs(mapped) do
    pcall(vim.keymap.del, "n", lhs)
  end
  mapped = {}
  for name, lhs in pairs(keymaps or {}) do
    local action = M.actions[name]
    if action and type(lhs) == "string" then
      vim.keymap.set("n", lhs, action.plug, { remap = true, silent = true, desc = action.desc })
      table.insert(mapped, lhs)
    end
  end
end

return M
