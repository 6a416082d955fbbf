-- The queue window (:LofiQueue): the running and pending jobs, brought up to date while it is open.
local engine = require("lofi.core.engine")
local events = require("lofi.state.events")
local messages = require("lofi.ui.messages")
local wording = require("lofi.ui.wording")

local M = {}

---Lines describing the running and pending jobs.
---@param queue table The engine's `queue` answer
---@return string[]
function M.lines(queue)
  local lines = {}
  local function line(job, state)
    local eta = job.eta_sec and (" eta " .. wording.clock(job.eta_sec)) or ""
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

local function float_size(lines)
  local width = 20
  for _, l in ipairs(lines) do
    width = math.max(width, vim.fn.strdisplaywidth(l))
  end
  width = math.min(width + 2, vim.o.columns - 4)
  local height = math.max(math.min(#lines, vim.o.lines - 4), 1)
  return width, height
end

---Show lines in a scratch float; q or <Esc> closes it.
---@param lines string[]
---@param title string
---@return integer buf, integer win
function M.float(lines, title)
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  vim.bo[buf].bufhidden = "wipe"
  vim.bo[buf].filetype = "lofi"
  local width, height = float_size(lines)
  local win = vim.api.nvim_open_win(buf, true, {
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
  return buf, win
end

local queue_win = nil

---Whether the queue window is open.
---@return boolean
function M.is_open()
  return queue_win ~= nil and vim.api.nvim_win_is_valid(queue_win)
end

---Show these lines: opens the window, or (when it is open) updates it; `focus` moves the cursor into it.
---@param lines string[]
---@param focus boolean?
function M.draw(lines, focus)
  if not M.is_open() then
    local _, win = M.float(lines, "lofi queue")
    queue_win = win
    return
  end
  local buf = vim.api.nvim_win_get_buf(queue_win)
  vim.bo[buf].modifiable = true
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  local width, height = float_size(lines)
  local cfg = vim.api.nvim_win_get_config(queue_win)
  cfg.width, cfg.height = width, height
  cfg.row = math.floor((vim.o.lines - height) / 2)
  cfg.col = math.floor((vim.o.columns - width) / 2)
  pcall(vim.api.nvim_win_set_config, queue_win, cfg)
  if focus then
    vim.api.nvim_set_current_win(queue_win)
  end
end

local refresh_pending, last_refresh = false, 0

---Ask the engine for the queue and show it (opens the window, or updates it); `focus` moves the cursor into it.
---@param focus boolean?
function M.show(focus)
  local queue, err = engine.request("queue")
  if err then
    messages.report(err)
    return
  end
  for _, job in ipairs(vim.list_extend({ queue.running }, queue.pending or {})) do
    if job.track_id then
      events.remember(job.track_id, job)
    end
  end
  M.draw(M.lines(queue), focus)
end

---While the queue window is open, bring it up to date (at most 5 times a second, and once after the last change).
function M.refresh()
  if not M.is_open() or refresh_pending then
    return
  end
  local wait = math.max(0, 200 - (vim.uv.now() - last_refresh))
  refresh_pending = true
  vim.defer_fn(function()
    refresh_pending = false
    last_refresh = vim.uv.now()
    if M.is_open() then
      M.show(false)
    end
  end, wait)
end

return M
