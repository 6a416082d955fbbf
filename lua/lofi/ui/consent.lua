-- Asking the user before a download (the model, or EnCodec's weights for continuing audio): one question at a time.
-- "Not now" is remembered for the session, per download (later requests needing it are declined without asking
-- again), but :LofiDownload always asks.
local engine = require("lofi.core.engine")
local messages = require("lofi.ui.messages")

local M = {}

local asking, declined = false, {}

---Ask whether to download, and send the answer to the engine.
---@param data table the consent_required event (variant, what, size_bytes, license), or status().download_question
---@param on_answer fun(agreed: boolean)?
---@param explicit boolean? the user asked for the download (:LofiDownload): ask even after "Not now"
function M.ask(data, on_answer, explicit)
  if declined[data.variant] and not explicit then
    engine.request("download", { consent = false, variant = data.variant })
    return
  end
  if asking then
    return
  end
  asking = true
  local about = {}
  if data.size_bytes then
    table.insert(about, ("%.2f GB"):format(data.size_bytes / 1e9))
  end
  if data.license then
    table.insert(about, "weights licensed " .. data.license)
  end
  local details = #about > 0 and (" (%s)"):format(table.concat(about, ", ")) or ""
  local where = data.host and (" on %s"):format(data.host) or "" -- the engine runs there: so does the download
  local prompt = ("lofi.nvim: download %s%s from HuggingFace%s?"):format(data.what, details, where)
  vim.ui.select({ "Download", "Not now" }, { prompt = prompt }, function(choice)
    asking = false
    local agreed = choice == "Download"
    declined[data.variant] = not agreed
    local _, err = engine.request("download", { consent = agreed, variant = data.variant })
    -- Neovim's own vim.ui.select (inputlist) leaves its list scrolled up on the screen: a message echoed now would
    -- raise a hit-enter prompt (and freeze the progress line under it). Redraw first, on the main loop.
    vim.schedule(function()
      pcall(vim.cmd, "redraw")
      if err then
        messages.error(err)
      elseif agreed then
        messages.progress("download", ("lofi: downloading %s…"):format(data.what))
      end
      if on_answer then
        on_answer(agreed)
      end
    end)
  end)
end

return M
