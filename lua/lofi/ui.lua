-- What the user sees: notifications (start, completion, errors), one quiet progress line, the statusline, the queue
-- window, and the plugin log Lua-side errors are written to. Nothing here may raise a hit-enter prompt: with Neovim's
-- own vim.notify, messages are echoed one line at a time, cut to the room the command line has.
local config = require("lofi.config")
local events = require("lofi.events")

local M = {}

local INFO, WARN, ERROR = vim.log.levels.INFO, vim.log.levels.WARN, vim.log.levels.ERROR
local REDRAW_EVERY_MS = 200
local MAX_NOTIFICATION = 300 -- characters a notification plugin gets of a long error (the rest is in :LofiLog)

---m:ss
---@param seconds number?
---@return string
function M.clock(seconds)
  seconds = math.max(0, math.floor((seconds or 0) + 0.5))
  return ("%d:%02d"):format(math.floor(seconds / 60), seconds % 60)
end

-- ---- logs ---------------------------------------------------------------------------------------------------

---Where the remote plugin and the engine write their logs (the remote plugin is handed this folder).
---@return {dir: string, plugin: string, engine: string, player: string}
function M.log_paths()
  local dir = vim.fn.stdpath("state") .. "/lofi"
  return { dir = dir, plugin = dir .. "/plugin.log", engine = dir .. "/engine.log", player = dir .. "/player.log" }
end

---Append an error the Lua side found (player, command line, setup) to the plugin log, next to the remote plugin's.
---@param message string
function M.log(message)
  local paths = M.log_paths()
  pcall(vim.fn.mkdir, paths.dir, "p")
  local line = ("%s lofi.lua ERROR %s"):format(os.date("%Y-%m-%d %H:%M:%S"), (message:gsub("\n", " | ")))
  pcall(vim.fn.writefile, { line }, paths.plugin, "a")
end

-- ---- naming tracks ------------------------------------------------------------------------------------------

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

-- ---- messages -----------------------------------------------------------------------------------------------

---Whether vim.notify is Neovim's own (then lofi echoes itself, one line at a time).
local function builtin_notify()
  local info = debug.getinfo(vim.notify, "S")
  return info ~= nil and info.source ~= nil and info.source:find("vim/_editor.lua", 1, true) ~= nil
end

---Whether a notification plugin that replaces messages in place (nvim-notify, snacks, noice) handles vim.notify.
local function replacing_notifier()
  return not builtin_notify() and (package.loaded["notify"] or package.loaded["snacks"] or package.loaded["noice"]) ~= nil
end

---`text` cut to `width` display cells, ending with `tail` when cut.
local function shorten(text, width, tail)
  text = (text:gsub("\n.*", " …"))
  if vim.fn.strdisplaywidth(text) <= width then
    return text
  end
  local keep = math.max(width - vim.fn.strdisplaywidth(tail), 10)
  return vim.fn.strcharpart(text, 0, keep) .. tail
end

---One line in the message area, never more than it holds (so never a hit-enter prompt).
local function echo(text, hl, history, tail)
  local room = math.max((tonumber(vim.v.echospace) or 80) - 1, 20)
  pcall(vim.api.nvim_echo, { { shorten(text, room, tail or "…"), hl } }, history, {})
end

---A notification: start, completion, an error. Errors are also written to the plugin log (unless the remote plugin
---logged them already) and shortened, with the details in :LofiLog.
---@param message string
---@param level integer?
---@param opts {logged: boolean?, progress: string?}? logged: already in a log; progress: the progress line it ends
function M.notify(message, level, opts)
  level = level or INFO
  opts = type(opts) == "table" and opts or {}
  if level >= ERROR and not opts.logged then
    M.log(message)
  end
  if not config.options.notify and level < ERROR then
    return
  end
  local tail = level >= ERROR and " … (:LofiLog)" or "…"
  if builtin_notify() then
    echo(message, level >= ERROR and "ErrorMsg" or level >= WARN and "WarningMsg" or nil, true, tail)
    return
  end
  local replace = opts.progress and M._progress[opts.progress] and M._progress[opts.progress].record or nil
  pcall(vim.notify, shorten(message, MAX_NOTIFICATION, tail), level, { title = "lofi", replace = replace })
end

---An error from the engine (or a check) as one clean line with its code: the cause and what to do first, what it
---is about (a track) last, so a shortened line keeps the part that matters.
---@param err lofi.Error
---@param opts {logged: boolean?, what: string?, progress: string?}? what: the track it is about
function M.error(err, opts)
  opts = opts or {}
  local about = opts.what and (" — " .. opts.what) or ""
  local message = ("lofi: %s: %s%s"):format(err.code or "ERROR", M.for_lua(err.message) or "unknown error", about)
  M.notify(message, ERROR, opts)
end

---Errors the Lua side finds itself (the remote plugin logs the ones it returns).
local LUA_SIDE = { NOT_REGISTERED = true, NOT_INSTALLED = true, PLUGIN_ERROR = true }

---Notify an error a request returned (the remote plugin logged it, unless it never got there or `lua` says the Lua
---side found it).
---@param err lofi.Error
---@param opts {what: string?, lua: boolean?}?
function M.report(err, opts)
  opts = opts or {}
  M.error(err, { logged = not (LUA_SIDE[err.code] or opts.lua), what = opts.what })
end

-- ---- the progress line --------------------------------------------------------------------------------------

---@type table<string, {record: any, handle: any, id: any}>
M._progress = {}

---The progress lines shown, newest last (at most 100): what the user saw, for tests and bug reports.
---@type string[]
M.progress_log = {}

local function native_progress()
  return vim.fn.has("nvim-0.12") == 1
end

---Show how far something is on one updating line that is kept out of :messages: Neovim 0.12's native progress
---message, fidget.nvim, a replacing notifier (nvim-notify, snacks, noice), or else an echo without history (in
---Normal mode only, so it never covers `-- INSERT --` or a command being typed).
---@param key string what it is about (a track id, "download"): one line per key
---@param text string
---@param percent integer?
function M.progress(key, text, percent)
  table.insert(M.progress_log, text)
  if #M.progress_log > 100 then
    table.remove(M.progress_log, 1)
  end
  if not config.options.notify then
    return
  end
  local p = M._progress[key] or {}
  M._progress[key] = p
  local has_fidget, fidget = pcall(require, "fidget.progress")
  if has_fidget and type(fidget) == "table" and fidget.handle then
    if p.handle then
      pcall(p.handle.report, p.handle, { message = text, percentage = percent })
    else
      local ok, handle = pcall(fidget.handle.create, { title = "lofi", message = text, percentage = percent, lsp_client = { name = "lofi" } })
      p.handle = ok and handle or nil
    end
    return
  end
  if replacing_notifier() then
    local ok, record = pcall(vim.notify, text, INFO, { title = "lofi", id = "lofi_" .. key, replace = p.record, hide_from_history = true })
    p.record = ok and type(record) == "table" and record or nil
    return
  end
  if native_progress() then
    local opts = { kind = "progress", id = p.id, title = "lofi", status = "running", percent = percent }
    local ok, id = pcall(vim.api.nvim_echo, { { text } }, false, opts)
    if ok then
      p.id = id
      return
    end
  end
  local mode = vim.api.nvim_get_mode()
  if mode.blocking or mode.mode ~= "n" or vim.o.cmdheight == 0 then
    return
  end
  echo(text, nil, false)
end

---The progress line of `key` is done ("success", "failed" or "cancel"); a notification usually follows.
---@param key string
---@param status string
function M.progress_done(key, status)
  local p = M._progress[key]
  if not p then
    return
  end
  vim.schedule(function()
    M._progress[key] = nil -- after the notification that replaces it (nvim-notify's `replace`)
  end)
  if p.handle then
    pcall(status == "success" and p.handle.finish or p.handle.cancel, p.handle)
  elseif p.id ~= nil and native_progress() then
    local percent = status == "success" and 100 or nil
    pcall(vim.api.nvim_echo, { { "" } }, false, { kind = "progress", id = p.id, title = "lofi", status = status, percent = percent })
  end
end

-- ---- the statusline -----------------------------------------------------------------------------------------

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

---How long a prompt may be on the statusline.
M.STATUSLINE_PROMPT = 24

---What plays: `▶ rainy piano`, `⏸ rainy piano`, `▶ radio live: lofi hip hop` (mode starting, live, rotation or
---error), or "" when nothing plays and the radio is off.
---@return string
function M.playing_line()
  local player = require("lofi.player")
  local current, radio = player.current, player.radio
  local icon = current and current.state == "paused" and "⏸" or "▶"
  if radio.active then
    local prompt = radio.prompt or (current and current.prompt) or ""
    local text = ("%s radio %s"):format(current and icon or "♪", radio.mode or "starting")
    return prompt ~= "" and ("%s: %s"):format(text, M.shorten(prompt, M.STATUSLINE_PROMPT)) or text
  end
  if not current then
    return ""
  end
  local prompt = current.prompt or (events.known[current.track_id] or {}).prompt or current.track_id
  return ("%s %s"):format(icon, M.shorten(prompt, M.STATUSLINE_PROMPT))
end

---While a request is under way, its state: `♪ queued`, `♪ awaiting consent`, `♪ downloading 12%`, `♪ loading 40%`,
---`♪ 45% 0:35` (generating: percent, time left), `♪ decoding 80% 0:10` (ACE-Step), and `+N` when N more jobs
---wait; "" when nothing is.
---@return string
function M.generation_line()
  local job = events.current()
  local text
  if job and job.state == "generating" then
    local doing = job.stage == "decode" and "decoding " or ""
    text = ("♪ %s%d%%"):format(doing, job.percent or 0)
    if job.eta_sec then
      text = text .. " " .. M.clock(job.eta_sec)
    end
  elseif job and job.state == "loading" then
    text = ("♪ loading %d%%"):format(job.percent or 0)
  elseif events.download then
    text = ("♪ downloading %d%%"):format(events.download.percent or 0)
  elseif events.awaiting_consent then
    text = "♪ awaiting consent"
  elseif job then
    text = "♪ queued"
  else
    return ""
  end
  local more = #events.jobs() - 1
  if more > 0 then
    text = ("%s +%d"):format(text, more)
  end
  return text
end

---What plays and what is being generated, together (`▶ rainy piano · ♪ 45% 0:35`); "" when neither.
---@return string
function M.statusline()
  local playing, generating = M.playing_line(), M.generation_line()
  if playing ~= "" and generating ~= "" then
    return playing .. " · " .. generating
  end
  return playing .. generating
end

local last_redraw, redraw_pending = 0, false

local function redraw()
  last_redraw = vim.uv.now()
  pcall(vim.cmd, "redrawstatus!") -- every window's (the queue window has none of its own)
end

---Let statuslines and other plugins know the state changed (`User LofiProgress`); redraws every statusline at most
---every 200 ms, and always once more after the last change (or at once with `now`: a job ended or failed).
---@param now boolean?
function M.progress_changed(now)
  pcall(vim.api.nvim_exec_autocmds, "User", { pattern = "LofiProgress", modeline = false })
  local since = vim.uv.now() - last_redraw
  if now or since >= REDRAW_EVERY_MS then
    redraw()
  elseif not redraw_pending then
    redraw_pending = true
    vim.defer_fn(function()
      redraw_pending = false
      redraw()
    end, REDRAW_EVERY_MS - since)
  end
end

-- ---- the queue window ---------------------------------------------------------------------------------------

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
function M.queue_open()
  return queue_win ~= nil and vim.api.nvim_win_is_valid(queue_win)
end

---Show the queue: opens the window, or (when it is open) updates it; `focus` moves the cursor into it.
---@param lines string[]
---@param focus boolean?
function M.show_queue(lines, focus)
  if not M.queue_open() then
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

return M
