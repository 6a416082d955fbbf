-- How the plugin words what it shows: times (m:ss), text cut to a width, tracks by what they are.
local events = require("lofi.state.events")

local M = {}

---m:ss
---@param seconds number?
---@return string
function M.clock(seconds)
  seconds = math.max(0, math.floor((seconds or 0) + 0.5))
  return ("%d:%02d"):format(math.floor(seconds / 60), seconds % 60)
end

---`text` cut to `width` characters, ending with "…" when cut.
---@param text string
---@param width integer
---@return string
function M.shorten(text, width)
  if vim.fn.strchars(text) <= width then
    return text
  end
  return vim.fn.strcharpart(text, 0, width - 1) .. "…"
end

---`<id> "prompt" (30s, musicgen)`: a track as people know it, with its id.
---@param track_id string
---@param info table? prompt, duration_sec, backend (default: what is known about the id)
---@return string
function M.describe(track_id, info)
  info = vim.tbl_extend("keep", info or {}, events.known[track_id] or {})
  local parts = {}
  if info.duration_sec then
    table.insert(parts, ("%gs"):format(info.duration_sec))
  end
  if info.backend then
    table.insert(parts, info.backend)
  end
  local text = track_id or ""
  if info.prompt then
    text = ("%s %q"):format(text, info.prompt)
  end
  if #parts > 0 then
    text = ("%s (%s)"):format(text, table.concat(parts, ", "))
  end
  return vim.trim(text)
end

return M
