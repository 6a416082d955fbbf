-- What the user reads in the message area: notifications (start, completion, errors), one quiet progress line, and
-- the plugin log Lua-side errors are written to. Nothing here may raise a hit-enter prompt: with Neovim's own
-- vim.notify, messages are echoed one line at a time, cut to the room the command line has.
local config = require("lofi.core.config")
local engine = require("lofi.core.engine")

local M = {}

local INFO, WARN, ERROR = vim.log.levels.INFO, vim.log.levels.WARN, vim.log.levels.ERROR
local MAX_NOTIFICATION = 300 -- characters a notification plugin gets of a long error (the rest is in :LofiLog)

-- ---- logs ---------------------------------------------------------------------------------------------------

---The folder the service moved the logs to, when Neovim's state folder cannot be written (a service_warning).
local moved_log_dir = nil

---@param dir string
function M.use_log_dir(dir)
  moved_log_dir = dir
end

---Where the remote plugin and the engine write their logs (the remote plugin is handed this folder).
---@return {dir: string, plugin: string, engine: string, player: string}
function M.log_paths()
  local dir = moved_log_dir or (vim.fn.stdpath("state") .. "/lofi")
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

---Columns one message line may take without a hit-enter prompt.
---@return integer
function M.room()
  return math.max((tonumber(vim.v.echospace) or 80) - 1, 20)
end

---One line in the message area, never more than it holds (so never a hit-enter prompt).
local function echo(text, hl, history, tail)
  pcall(vim.api.nvim_echo, { { shorten(text, M.room(), tail or "…"), hl } }, history, {})
end

---A notification: start, completion, an error. Errors are also written to the plugin log (unless the remote plugin
---logged them already) and shortened, with the details in :LofiLog.
---@param message string
---@param level integer?
---@param opts {logged: boolean?, progress: string?, full: boolean?}? logged: already in a log; progress: the progress
---line it ends; full: the answer to what the user just asked for, shown whole (wrapped, as Neovim shows its own long
---errors) when they are in Normal mode, else one line like the rest
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
    local hl = level >= ERROR and "ErrorMsg" or level >= WARN and "WarningMsg" or nil
    if opts.full and vim.api.nvim_get_mode().mode == "n" then
      pcall(vim.api.nvim_echo, { { message, hl } }, true, {})
    else
      echo(message, hl, true, tail)
    end
    return
  end
  local replace = opts.progress and M._progress[opts.progress] and M._progress[opts.progress].record or nil
  pcall(vim.notify, shorten(message, MAX_NOTIFICATION, tail), level, { title = "lofi", replace = replace })
end

---An error from the engine (or a check) as one clean line with its code: the cause and what to do first, what it
---is about (a track) last, so a shortened line keeps the part that matters.
---@param err lofi.Error
---@param opts {logged: boolean?, what: string?, progress: string?, full: boolean?}? what: the track it is about
function M.error(err, opts)
  opts = opts or {}
  local about = opts.what and (" — " .. opts.what) or ""
  local message = ("lofi: %s: %s%s"):format(err.code or "ERROR", engine.for_lua(err.message) or "unknown error", about)
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

return M
