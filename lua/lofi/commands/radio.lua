-- :LofiRadio: start, steer and stop the radio.
local common = require("lofi.commands.common")
local lofi = require("lofi")
local messages = require("lofi.ui.messages")
local player = require("lofi.state.player")

local M = {}

local RADIO_OPTIONS = { strategy = true, seed = true, backend = true, bpm = true, key = true, time_signature = true, from = true }
local NUMBERS = { seed = true, bpm = true, time_signature = true }

---`:LofiRadio lofi hip hop strategy=same_prompt seed=3` → the radio's options; `word=value` with another word is an
---error, not part of the prompt.
---@param args string[]
---@return lofi.RadioOpts? opts, string? err
function M.parse_radio(args)
  local opts, words = {}, {}
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%a_][%w_]*)=(.*)$")
    if key and not RADIO_OPTIONS[key] then
      return nil, ("%s is not an option of :LofiRadio; options: strategy=, seed=, backend=, bpm=, key=, time_signature=, from="):format(key)
    elseif NUMBERS[key] then
      opts[key] = tonumber(value) or value -- the engine judges it
    elseif key then
      opts[key] = value
    else
      table.insert(words, arg)
    end
  end
  if #words > 0 then
    opts.prompt = table.concat(words, " ")
  end
  return opts
end

local last_radio_prompt = nil

local function start_radio(opts)
  local steering = player.radio.active
  local state, err = lofi.radio(opts)
  if err then
    common.report(err)
    return
  end
  last_radio_prompt = opts.prompt or last_radio_prompt
  if steering and state and state.prompt then
    messages.notify(("lofi: radio steered to %q"):format(state.prompt))
  elseif state then
    messages.notify(("lofi: radio %s %q"):format(state.strategy or "", state.prompt or ""))
  end
end

---:LofiRadio [prompt] [strategy=…] [seed=N] [backend=…] [from=file|track] starts the radio (while it plays, a new
---prompt steers it; from= goes on from your audio); :LofiRadio stop stops it; without a prompt, asks for one (the last
---one offered; a track given with from= has its own).
function M.radio(cmd)
  if vim.trim(cmd.args) == "stop" then
    if not player.radio.active then
      messages.notify("lofi: the radio is not playing")
      return
    end
    local _, err = lofi.radio_stop()
    if err then
      common.report(err)
    else
      messages.notify("lofi: radio stopped")
    end
    return
  end
  local opts, err = M.parse_radio(common.split_words(cmd.args))
  if not opts then
    common.invalid(err)
    return
  end
  if opts.prompt or (opts.strategy and opts.strategy:find("preset")) or (opts.from and opts.from:match("^%x+$") and #opts.from == 16) then
    start_radio(opts)
    return
  end
  common.ask_prompt("lofi radio: ", last_radio_prompt, function(prompt)
    opts.prompt = vim.trim(prompt)
    start_radio(opts)
  end)
end

function M.complete_radio(arg_lead)
  if arg_lead:match("^from=") then -- a file, or a cached track
    local lead = arg_lead:sub(6)
    local found = vim.fn.getcompletion(lead, "file")
    for _, t in ipairs((lofi.tracks())) do
      table.insert(found, t.track_id)
    end
    return vim.tbl_map(function(v) return "from=" .. v end, common.starting_with(found, lead))
  end
  local options = { "stop", "strategy=continue", "strategy=same_prompt", "seed=", "backend=musicgen", "backend=ace-step", "bpm=", 'key="', "time_signature=", "from=" }
  return common.starting_with(options, arg_lead)
end

return M
