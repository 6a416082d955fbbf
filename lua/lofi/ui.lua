-- What the user sees: progress notifications that replace themselves, the statusline, the queue window.
local config = require("lofi.config")
local events = require("lofi.events")

local M = {}

local NOTIFY_ID = "lofi_progress"
local notify_record = nil -- nvim-notify's handle of the last progress message, to replace it
local last_redraw = 0
local REDRAW_EVERY_MS = 200

---m:ss
---@param seconds number?
---@return string
function M.clock(seconds)
  seconds = math.max(0, math.floor((seconds or 0) + 0.5))
  return ("%d:%02d"):format(math.floor(seconds / 60), seconds % 60)
end

---One message, level and title for vim.notify; progress replaces itself (nvim-notify `replace`, snacks `id`).
---@param message string
---@param level integer?
---@param progress boolean?
function M.notify(message, level, progress)
  if not config.options.notify and (level or vim.log.levels.INFO) < vim.log.levels.ERROR then
    return
  end
  local opts = { title = "lofi", id = NOTIFY_ID }
  if progress then
    opts.replace = notify_record
  end
  local ok, record = pcall(vim.notify, message, level or vim.log.levels.INFO, opts)
  notify_record = progress and ok and type(record) == "table" and record or nil
end

---An error from the engine as one clean line with its code.
---@param err lofi.Error
function M.error(err)
  M.notify(("lofi: %s: %s"):format(err.code or "ERROR", err.message or "unknown error"), vim.log.levels.ERROR)
end

---"" when idle, "♪ 45% 0:35" while generating.
---@return string
function M.statusline()
  local job = events.current()
  if not job then
    return ""
  end
  if job.eta_sec then
    return ("♪ %d%% %s"):format(job.percent, M.clock(job.eta_sec))
  end
  return ("♪ %d%%"):format(job.percent)
end

---Let statuslines and other plugins know progress changed; redraws at most every 200 ms.
function M.progress_changed()
  vim.api.nvim_exec_autocmds("User", { pattern = "LofiProgress", modeline = false })
  local now = vim.uv.now()
  if now - last_redraw >= REDRAW_EVERY_MS then
    last_redraw = now
    vim.cmd.redrawstatus()
  end
end

---Lines describing the running and pending jobs.
---@param queue table The engine's `queue` answer
---@return string[]
function M.queue_lines(queue)
  local lines = {}
  local function line(job, state)
    local eta = job.eta_sec and (" eta " .. M.clock(job.eta_sec)) or ""
    local what = job.kind == "download" and "model download"
      or ("%q %ss seed %s %s"):format(job.prompt, job.duration_sec, job.seed, job.backend or "")
    return ("%2d  %-8s %3d%%%s  %s%s"):format(job.position, state, job.percent or 0, eta, what, job.priority == "high" and "  [high]" or "")
  end
  if queue.running then
    table.insert(lines, line(queue.running, "running"))
  end
  for _, job in ipairs(queue.pending or {}) do
    table.insert(lines, line(job, "queued"))
  end
  if #lines == 0 then
    lines = { "nothing is generating" }
  end
  if queue.awaiting_consent then
    table.insert(lines, "(waiting for your consent to download the model: :LofiDownload)")
  end
  return lines
end

---Show lines in a scratch float; q or <Esc> closes it.
---@param lines string[]
---@param title string
---@return integer buf
function M.float(lines, title)
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  vim.bo[buf].bufhidden = "wipe"
  vim.bo[buf].filetype = "lofi"
  local width = 20
  for _, l in ipairs(lines) do
    width = math.max(width, vim.fn.strdisplaywidth(l))
  end
  width = math.min(width + 2, vim.o.columns - 4)
  local height = math.min(#lines, vim.o.lines - 4)
  vim.api.nvim_open_win(buf, true, {
    relative = "editor",
    width = width,
    height = height,
    row = math.floor((vim.o.lines - height) / 2),
    col = math.floor((vim.o.columns - width) / 2),
    style = "minimal",
    border = "rounded",
    title = " " .. title .. " ",
  })
  for _, key in ipairs({ "q", "<Esc>" }) do
    vim.keymap.set("n", key, "<cmd>close<cr>", { buffer = buf, nowait = true, desc = "Close" })
  end
  return buf
end

return M
