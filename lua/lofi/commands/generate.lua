-- :LofiGenerate, :LofiQueue and :LofiCancel.
local common = require("lofi.commands.common")
local config = require("lofi.core.config")
local engine = require("lofi.core.engine")
local lofi = require("lofi")
local messages = require("lofi.ui.messages")
local queue = require("lofi.ui.queue")
local schema = require("lofi.schema")
local wording = require("lofi.ui.wording")

local M = {}

local OPTIONS = {
  duration = "duration_sec",
  duration_sec = "duration_sec",
  seed = "seed",
  priority = "priority",
  backend = "backend",
  bpm = "bpm",
  key = "key",
  time_signature = "time_signature",
}
local OPTION_NAMES = { "duration", "seed", "priority", "backend", "bpm", "key", "time_signature" }
local NUMBERS = { duration_sec = true, seed = true, bpm = true, time_signature = true }

---Split `lofi hip hop duration=20 seed=3 bpm=80 key="C minor"` into a prompt and options (numbers where they
---look like numbers). `word=value` with an unknown word is an error; the values are the engine's to judge.
---@param args string[]
---@return lofi.GenerateOpts? opts, string? err
function M.parse_generate(args)
  local opts, words = {}, {}
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%a_][%w_]*)=(.*)$")
    if key and not OPTIONS[key] then
      local near = config.closest(key, OPTION_NAMES)
      local hint = near and (" (did you mean %s=?)"):format(near) or ""
      return nil, ("%s is not an option of :LofiGenerate%s; options: %s"):format(key, hint, table.concat(OPTION_NAMES, "=, ") .. "=")
    elseif key then
      opts[OPTIONS[key]] = NUMBERS[OPTIONS[key]] and tonumber(value) or value -- not a number: the engine says so
    else
      table.insert(words, arg)
    end
  end
  opts.prompt = table.concat(words, " ")
  return opts
end

local function generate(opts)
  local _, err = lofi.generate(opts)
  if err then
    common.report(err)
  end
end

---Generate `opts`, asking for the prompt first when it has none.
local function generate_asking(opts)
  if opts.prompt ~= "" then
    generate(opts)
    return
  end
  common.ask_prompt("lofi prompt: ", nil, function(prompt)
    opts.prompt = prompt
    generate(opts)
  end)
end

function M.generate(cmd)
  local opts, err = M.parse_generate(common.split_words(cmd.args))
  if not opts then
    common.invalid(err)
    return
  end
  if opts.prompt ~= "" then
    generate(opts)
    return
  end
  local _, bad = engine.request("check_generate", vim.tbl_extend("force", opts, { prompt = vim.NIL, duration_sec = opts.duration_sec or config.options.duration_sec }))
  if bad then -- before the prompt is asked for
    common.report(bad)
    return
  end
  generate_asking(opts)
end

---:LofiContinue [file|track] [prompt] [duration=N] [bpm=…]: a piece continuing a file or a cached track (default:
---the track playing); without a prompt, the track's own (a file's: asked for).
function M.continue(cmd)
  local words = common.split_words(cmd.args)
  local tracks = lofi.tracks()
  local source, track = nil, nil
  if words[1] and not words[1]:find("=", 1, true) then
    local first = words[1]
    local id = common.resolve(first, tracks)
    if id and id == first then
      source = id
    elseif first:find("/", 1, true) or first:match("^[~.]") or vim.fn.filereadable(vim.fn.expand(first)) == 1 then
      source = first -- a path: the engine judges it (a missing file or a folder is refused there, with its name)
    end
    if source then
      table.remove(words, 1)
    end
  end
  if not source then
    local now = lofi.now_playing()
    source = now and now.state ~= "stopped" and now.track_id ~= vim.NIL and now.track_id or nil
  end
  if not source then
    common.invalid("nothing to continue: give a file or a track (:LofiContinue <Tab>), or play one")
    return
  end
  for _, item in ipairs(tracks) do
    if item.track_id == source then
      track = item
    end
  end
  local opts, err = M.parse_generate(words)
  if not opts then
    common.invalid(err)
    return
  end
  opts.continue_from = source
  if opts.prompt == "" and track then
    opts.prompt = track.prompt
  end
  generate_asking(opts)
end

function M.complete_continue(arg_lead)
  local items = common.complete_items((lofi.tracks()), arg_lead)
  local ids = vim.tbl_map(function(item)
    return item:match("^(%S+)")
  end, items)
  return vim.list_extend(ids, vim.fn.getcompletion(arg_lead, "file"))
end

function M.complete_generate(arg_lead)
  local options = { "duration=", "seed=", "priority=high", "priority=normal", "backend=musicgen", "backend=ace-step", "bpm=", 'key="', "time_signature=" }
  return common.starting_with(options, arg_lead)
end

---:LofiQueue: the running and pending jobs, in a window that updates while it is open.
function M.queue()
  queue.show(true)
end

function M.complete_pending(arg_lead)
  return common.complete_items((common.jobs()), arg_lead)
end

function M.cancel(cmd)
  local id = nil
  if cmd.args ~= "" then
    local items, err = common.jobs()
    if err then
      common.report(err)
      return
    end
    id = common.resolve(cmd.args, items) or cmd.args:match("^(%S+)")
  end
  local result, err = lofi.cancel(id)
  if err then
    if err.code == "INVALID_PARAMS" and not id then
      messages.notify("lofi: " .. err.message, vim.log.levels.WARN)
    else
      common.report(err)
    end
    return
  end
  if result and result.status == "cancelling" then
    messages.notify("lofi: cancelling " .. wording.describe(result.track_id))
  end
  -- "cancelled …" comes with the job's generation_error (CANCELLED)
end

return M
