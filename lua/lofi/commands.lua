-- :LofiGenerate, :LofiQueue, :LofiPlay, :LofiStop, :LofiDownload with completion.
local M = {}

local OPTIONS = { duration = "duration_sec", seed = "seed", priority = "priority", backend = "backend" }
local WORDS = { priority = true, backend = true }

---Split `lofi hip hop duration=20 seed=3 priority=high backend=ace-step` into a prompt and options.
---@param args string[]
---@return lofi.GenerateOpts? opts, string? err
function M.parse_generate(args)
  local opts, words = {}, {}
  for _, arg in ipairs(args) do
    local key, value = arg:match("^(%w+)=(.*)$")
    if key and OPTIONS[key] then
      if WORDS[key] then
        opts[OPTIONS[key]] = value
      else
        local number = tonumber(value)
        if not number then
          return nil, ("%s must be a number, not %q"):format(key, value)
        end
        opts[OPTIONS[key]] = number
      end
    else
      table.insert(words, arg)
    end
  end
  opts.prompt = table.concat(words, " ")
  return opts
end

function M.generate(cmd)
  local lofi = require("lofi")
  local opts, err = M.parse_generate(cmd.fargs)
  if not opts then
    require("lofi.ui").error({ code = "INVALID_PARAMS", message = err })
    return
  end
  if opts.prompt ~= "" then
    lofi.generate(opts)
    return
  end
  vim.ui.input({ prompt = "lofi prompt: " }, function(prompt)
    if prompt and vim.trim(prompt) ~= "" then
      opts.prompt = prompt
      lofi.generate(opts)
    end
  end)
end

function M.complete_generate(arg_lead)
  local items = { "duration=", "seed=", "priority=high", "priority=normal", "backend=musicgen", "backend=ace-step" }
  return vim.tbl_filter(function(item)
    return vim.startswith(item, arg_lead)
  end, items)
end

function M.queue()
  local queue, err = require("lofi").queue()
  if err then
    require("lofi.ui").error(err)
    return
  end
  local ui = require("lofi.ui")
  ui.float(ui.queue_lines(queue), "lofi queue")
end

---Track ids of `items` starting with what was typed.
local function complete_ids(items, arg_lead)
  local ids = {}
  for _, item in ipairs(items) do
    if item.track_id and vim.startswith(item.track_id, arg_lead) then
      table.insert(ids, item.track_id)
    end
  end
  return ids
end

function M.complete_tracks(arg_lead)
  return complete_ids((require("lofi").tracks()), arg_lead)
end

function M.complete_pending(arg_lead)
  local queue = require("lofi").queue() or {}
  local jobs = vim.list_extend({ queue.running }, queue.pending or {})
  return complete_ids(jobs, arg_lead)
end

function M.register()
  local create = vim.api.nvim_create_user_command
  create("LofiGenerate", M.generate, {
    nargs = "*",
    complete = M.complete_generate,
    desc = "Generate music from a prompt: :LofiGenerate lofi hip hop duration=30 seed=1 priority=high backend=ace-step",
  })
  create("LofiQueue", M.queue, { desc = "Show the running and pending generations" })
  create("LofiPlay", function(cmd)
    require("lofi").play(cmd.args ~= "" and cmd.args or nil)
  end, { nargs = "?", complete = M.complete_tracks, desc = "Play a cached track (default: the most recently played)" })
  create("LofiStop", function()
    require("lofi").stop()
  end, { desc = "Stop playback" })
  create("LofiCancel", function(cmd)
    require("lofi").cancel(cmd.args ~= "" and cmd.args or nil)
  end, { nargs = "?", complete = M.complete_pending, desc = "Cancel a generation (default: the last queued, else the running one)" })
  create("LofiDownload", function()
    require("lofi").download()
  end, { desc = "Download the model (asks first)" })
end

return M
