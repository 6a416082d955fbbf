-- :LofiGenerate, :LofiQueue, :LofiCancel, :LofiPlay, :LofiStop, :LofiDownload, :LofiLog with completion. The
-- commands are where errors are notified (the Lua API returns them).
local config = require("lofi.config")
local schema = require("lofi.schema")

local M = {}

local OPTIONS = { duration = "duration_sec", duration_sec = "duration_sec", seed = "seed", priority = "priority", backend = "backend" }
local OPTION_NAMES = { "duration", "seed", "priority", "backend" }

---Errors the Lua side finds itself (the remote plugin logs the ones it returns).
local LUA_SIDE = { NOT_REGISTERED = true, NOT_INSTALLED = true, PLUGIN_ERROR = true }

---Notify an error from a request (logged by the remote plugin unless it never got there).
---@param err lofi.Error
local function report(err)
  require("lofi.ui").error(err, { logged = not LUA_SIDE[err.code] })
end

---Notify an error found here (it goes to the plugin log too).
---@param message string
---@param code string?
local function invalid(message, code)
  require("lofi.ui").error({ code = code or "INVALID_PARAMS", message = message })
end

---Split `lofi hip hop duration=20 seed=3 priority=high backend=ace-step` into a prompt and options, and check the
---options (so a bad one is reported before the prompt is asked for). `word=value` with an unknown word is an error.
---@param args string[]
---@return lofi.GenerateOpts? opts, string? err, string? code
function M.parse_generate(args)
  local opts, words = {}, {}
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%a_][%w_]*)=(.*)$")
    if key and not OPTIONS[key] then
      local near = config.closest(key, OPTION_NAMES)
      local hint = near and (" (did you mean %s=?)"):format(near) or ""
      return nil, ("%s is not an option of :LofiGenerate%s; options: %s"):format(key, hint, table.concat(OPTION_NAMES, "=, ") .. "=")
    elseif key then
      opts[OPTIONS[key]] = value
    else
      table.insert(words, arg)
    end
  end
  for _, key in ipairs({ "duration_sec", "seed" }) do
    if opts[key] ~= nil then
      local number = tonumber(opts[key])
      if not number then
        return nil, ("%s must be a number, not %q"):format(key == "seed" and "seed" or "duration", opts[key])
      end
      opts[key] = number
    end
  end
  if opts.seed and (opts.seed < 0 or opts.seed ~= math.floor(opts.seed)) then
    return nil, ("seed must be a whole number ≥ 0, not %s"):format(opts.seed)
  end
  if opts.priority and not vim.tbl_contains(schema.priorities, opts.priority) then
    return nil, ("priority must be one of %s, not %q"):format(table.concat(schema.priorities, ", "), opts.priority)
  end
  if opts.backend and not vim.tbl_contains(schema.backends, opts.backend) then
    return nil, ("backend must be one of %s, not %q"):format(table.concat(schema.backends, ", "), opts.backend)
  end
  if opts.duration_sec then
    local backend = opts.backend or config.options.backend
    local range = config.durations[backend]
    if range and (opts.duration_sec < range[1] or opts.duration_sec > range[2]) then
      local message = ("duration must be from %g to %g seconds with %s, not %g"):format(range[1], range[2], backend, opts.duration_sec)
      return nil, message, "INVALID_DURATION"
    end
  end
  opts.prompt = table.concat(words, " ")
  return opts
end

local function generate(opts)
  local _, err = require("lofi").generate(opts)
  if err then
    report(err)
  end
end

function M.generate(cmd)
  local opts, err, code = M.parse_generate(cmd.fargs)
  if not opts then
    invalid(err, code)
    return
  end
  if opts.prompt ~= "" then
    generate(opts)
    return
  end
  vim.ui.input({ prompt = "lofi prompt: " }, function(prompt)
    if prompt and vim.trim(prompt) ~= "" then
      opts.prompt = prompt
      generate(opts)
    end
  end)
end

function M.complete_generate(arg_lead)
  local items = { "duration=", "seed=", "priority=high", "priority=normal", "backend=musicgen", "backend=ace-step" }
  return vim.tbl_filter(function(item)
    return vim.startswith(item, arg_lead)
  end, items)
end

-- ---- the queue window ---------------------------------------------------------------------------------------

local refresh_pending, last_refresh = false, 0

local function show_queue(focus)
  local queue, err = require("lofi").queue()
  if err then
    report(err)
    return
  end
  local ui = require("lofi.ui")
  for _, job in ipairs(vim.list_extend({ queue.running }, queue.pending or {})) do
    if job.track_id then
      require("lofi.events").remember(job.track_id, job)
    end
  end
  ui.show_queue(ui.queue_lines(queue), focus)
end

function M.queue()
  show_queue(true)
end

---While the queue window is open, bring it up to date (at most 5 times a second, and once after the last change).
function M.refresh_queue()
  if not require("lofi.ui").queue_open() or refresh_pending then
    return
  end
  local wait = math.max(0, 200 - (vim.uv.now() - last_refresh))
  refresh_pending = true
  vim.defer_fn(function()
    refresh_pending = false
    last_refresh = vim.uv.now()
    if require("lofi.ui").queue_open() then
      show_queue(false)
    end
  end, wait)
end

-- ---- tracks by what they are ----------------------------------------------------------------------------------

---Completion items `<id> "prompt" (30s, backend)` for what was typed: an id's start or a piece of the prompt.
local function complete_items(items, arg_lead)
  local ui = require("lofi.ui")
  local lead = arg_lead:lower()
  local out = {}
  for _, item in ipairs(items) do
    local id = item.track_id
    if id then
      require("lofi.events").remember(id, item)
      local prompt = (item.prompt or ""):lower()
      if lead == "" or vim.startswith(id, arg_lead) or prompt:find(lead, 1, true) then
        table.insert(out, ui.describe(id, item))
      end
    end
  end
  return out
end

---The track id an argument names: the id (what completion inserts starts with it), or a prompt (exact, then part).
---@param arg string
---@param items table[] tracks or jobs
---@return string? id
local function resolve(arg, items)
  local first = arg:match("^(%S+)")
  for _, item in ipairs(items) do
    if item.track_id == first then
      return first
    end
  end
  local lower = arg:lower()
  for _, exact in ipairs({ true, false }) do
    for _, item in ipairs(items) do
      local prompt = (item.prompt or ""):lower()
      if item.track_id and ((exact and prompt == lower) or (not exact and prompt:find(lower, 1, true))) then
        return item.track_id
      end
    end
  end
  return nil
end

local function jobs()
  local queue, err = require("lofi").queue()
  if err then
    return {}, err
  end
  return vim.list_extend(vim.list_extend({}, queue.pending or {}), { queue.running }), nil
end

function M.complete_tracks(arg_lead)
  return complete_items((require("lofi").tracks()), arg_lead)
end

function M.complete_pending(arg_lead)
  return complete_items((jobs()), arg_lead)
end

function M.play(cmd)
  local lofi, ui = require("lofi"), require("lofi.ui")
  local id = nil
  if cmd.args ~= "" then
    local tracks, err = lofi.tracks()
    if err then
      report(err)
      return
    end
    id = resolve(cmd.args, tracks)
    if not id then
      ui.notify(("lofi: no cached track %s (:LofiPlay <Tab> lists them)"):format(cmd.args), vim.log.levels.WARN)
      return
    end
  end
  local ok, err = lofi.play(id)
  if not ok then
    ui.notify("lofi: " .. err, vim.log.levels.ERROR)
    return
  end
  local playing = require("lofi.player").current
  if playing and playing.track_id then
    ui.notify("lofi: playing " .. ui.describe(playing.track_id))
  end
end

function M.cancel(cmd)
  local lofi, ui = require("lofi"), require("lofi.ui")
  local id = nil
  if cmd.args ~= "" then
    local items, err = jobs()
    if err then
      report(err)
      return
    end
    id = resolve(cmd.args, items) or cmd.args:match("^(%S+)")
  end
  local result, err = lofi.cancel(id)
  if err then
    if err.code == "INVALID_PARAMS" and not id then
      ui.notify("lofi: " .. err.message, vim.log.levels.WARN)
    else
      report(err)
    end
    return
  end
  if result and result.status == "cancelling" then
    ui.notify("lofi: cancelling " .. ui.describe(result.track_id))
  end
  -- "cancelled …" comes with the job's generation_error (CANCELLED)
end

function M.stop()
  local ui = require("lofi.ui")
  local stopped = require("lofi").stop()
  if not stopped then
    ui.notify("lofi: nothing is playing")
  elseif stopped.track_id then
    ui.notify("lofi: stopped " .. ui.describe(stopped.track_id))
  else
    ui.notify("lofi: stopped " .. (stopped.path or "playback"))
  end
end

---Open the plugin's and the engine's logs (every error is in one of them).
function M.log()
  local paths = require("lofi.ui").log_paths()
  local files = vim.tbl_filter(function(path)
    return vim.fn.filereadable(path) == 1
  end, { paths.plugin, paths.engine })
  if #files == 0 then
    require("lofi.ui").notify(("lofi: nothing logged yet (logs go to %s and %s)"):format(paths.plugin, paths.engine))
    return
  end
  for i, path in ipairs(files) do
    vim.cmd((i == 1 and "tabnew " or "split ") .. vim.fn.fnameescape(path))
    vim.bo.readonly, vim.bo.modifiable, vim.bo.bufhidden = true, false, "wipe"
    vim.cmd("normal! G")
  end
end

function M.register()
  local create = vim.api.nvim_create_user_command
  create("LofiGenerate", M.generate, {
    nargs = "*",
    complete = M.complete_generate,
    desc = "Generate music from a prompt: :LofiGenerate lofi hip hop duration=30 seed=1 priority=high backend=ace-step",
  })
  create("LofiQueue", M.queue, { desc = "Show the running and pending generations (updates while open)" })
  create("LofiPlay", M.play, { nargs = "?", complete = M.complete_tracks, desc = "Play a cached track (default: the most recently played)" })
  create("LofiStop", M.stop, { desc = "Stop playback" })
  create("LofiCancel", M.cancel, { nargs = "?", complete = M.complete_pending, desc = "Cancel a generation (default: the last queued, else the running one)" })
  create("LofiDownload", function()
    require("lofi").download()
  end, { desc = "Download the model (asks first)" })
  create("LofiLog", M.log, { desc = "Open lofi's plugin and engine logs" })
end

return M
