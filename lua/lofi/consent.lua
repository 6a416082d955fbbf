-- Asking the user before the model is downloaded: one question at a time, and "Not now" is remembered for the
-- session (later requests are declined without asking again).
local engine = require("lofi.engine")
local ui = require("lofi.ui")

local M = {}

local asking, declined = false, false

---Ask whether to download the model, and send the answer to the engine.
---@param data table the consent_required event (variant, size_bytes)
---@param on_answer fun(agreed: boolean)?
function M.ask(data, on_answer)
  if declined then
    engine.request("download", { consent = false })
    return
  end
  if asking then
    return
  end
  asking = true
  local size = data.size_bytes and (" (%.1f GB)"):format(data.size_bytes / 1e9) or ""
  local prompt = ("lofi.nvim: download the MusicGen %s model%s from HuggingFace?"):format(data.variant, size)
  vim.ui.select({ "Download", "Not now" }, { prompt = prompt }, function(choice)
    asking = false
    local agreed = choice == "Download"
    declined = not agreed
    local _, err = engine.request("download", { consent = agreed })
    if err then
      ui.error(err)
    elseif agreed then
      ui.notify("lofi: downloading the model…", vim.log.levels.INFO, true)
    end
    if on_answer then
      on_answer(agreed)
    end
  end)
end

return M
