-- :LofiDownload and :LofiLog.
local lofi = require("lofi")
local messages = require("lofi.ui.messages")

local M = {}

---:LofiDownload: ask, then download the model.
function M.download()
  lofi.download()
end

---Open the plugin's, the engine's and the player's logs (every error is in one of them).
function M.log()
  local paths = messages.log_paths()
  local files = vim.tbl_filter(function(path)
    return vim.fn.filereadable(path) == 1
  end, { paths.plugin, paths.engine, paths.player })
  if #files == 0 then
    messages.notify(("lofi: nothing logged yet (logs go to %s: plugin.log, engine.log, player.log)"):format(paths.dir))
    return
  end
  for i, path in ipairs(files) do
    vim.cmd((i == 1 and "tabnew " or "split ") .. vim.fn.fnameescape(path))
    vim.bo.readonly, vim.bo.modifiable, vim.bo.bufhidden = true, false, "wipe"
    vim.cmd("normal! G")
  end
end

return M
