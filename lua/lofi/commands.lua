-- :LofiGenerate, :LofiQueue, :LofiCancel, :LofiDownload, :LofiLog; the player's :LofiPlay, :LofiPause, :LofiResume,
-- :LofiToggle, :LofiSkip, :LofiStop, :LofiVolume; :LofiRadio; the library's :LofiTracks and :LofiSave; with
-- completion. The commands are where errors are notified (the Lua API returns them).
local config = require("lofi.config")
local schema = require("lofi.schema")

local M = {}

local OPTIONS = { duration = "duration_sec", duration_sec = "duration_sec", seed = "seed", priority = "priority", backend = "backend" }
local OPTION_NAMES = { "duration", "seed", "priority", "backend" }

---Notify an error from a request (logged by the remote plugin unless it never got there).
---@param err lofi.Error
local function report(err)
  require("lofi.ui").report(err)
end

---Notify an error found here (it goes to the plugin log too).
---@param message string
---@param code string?
local function invalid(message, code)
  require("lofi.ui").error({ code = code or "INVALID_PARAMS", message = message })
end

---Ask for a prompt; ``run(prompt)`` when one (not blank) is given.
---@param label string
---@param default string?
---@param run fun(prompt: string)
local function ask_prompt(label, default, run)
  vim.ui.input({ prompt = label, default = default }, function(prompt)
    if prompt and vim.trim(prompt) ~= "" then
      run(prompt)
    end
  end)
end

---Completion items that start with what is typed.
---@param items string[]
---@param lead string
---@return string[]
local function starting_with(items, lead)
  return vim.tbl_filter(function(item)
    return vim.startswith(item, lead)
  end, items)
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
  ask_prompt("lofi prompt: ", nil, function(prompt)
    opts.prompt = prompt
    generate(opts)
  end)
end

function M.complete_generate(arg_lead)
  return starting_with({ "duration=", "seed=", "priority=high", "priority=normal", "backend=musicgen", "backend=ace-step" }, arg_lead)
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
    report(err)
    return
  end
  local playing = require("lofi.player").current
  if playing and playing.track_id then
    ui.notify("lofi: playing " .. ui.describe(playing.track_id))
  end
end

---A player control with nothing to say when it works (the statusline shows it), and "nothing is playing" when
---there is nothing to control.
local function control(name)
  return function()
    local ui = require("lofi.ui")
    if not require("lofi.player").current and not require("lofi.player").radio.active then
      ui.notify("lofi: nothing is playing")
      return
    end
    local _, err = require("lofi")[name]()
    if err then
      report(err)
    end
  end
end

M.pause = control("pause")
M.resume = control("resume")
M.toggle = control("toggle")
M.skip = control("skip")

---:LofiVolume N (0–100), +N / -N (from the current volume); without an argument, says the volume.
function M.volume(cmd)
  local lofi, ui, player = require("lofi"), require("lofi.ui"), require("lofi.player")
  local arg = vim.trim(cmd.args or "")
  if arg == "" then
    ui.notify(("lofi: volume %d"):format(player.volume_level()))
    return
  end
  local sign, number = arg:match("^([+-]?)(%d+%.?%d*)$")
  if not number then
    invalid(("the volume is a number from 0 to 100, or +N / -N, not %q"):format(arg))
    return
  end
  local level = tonumber(number)
  if sign == "+" then
    level = math.min(100, player.volume_level() + level)
  elseif sign == "-" then
    level = math.max(0, player.volume_level() - level)
  end
  local _, err = lofi.volume(level)
  if err then
    report(err)
  end
end

function M.complete_volume(arg_lead)
  return vim.tbl_filter(function(item)
    return vim.startswith(item, arg_lead)
  end, { "0", "25", "50", "75", "100", "+10", "-10" })
end

-- ---- the radio ----------------------------------------------------------------------------------------------

local RADIO_OPTIONS = { strategy = true, seed = true, backend = true }

---`:LofiRadio lofi hip hop strategy=same_prompt seed=3` → the radio's options; `word=value` with another word is an
---error, not part of the prompt.
---@param args string[]
---@return lofi.RadioOpts? opts, string? err
function M.parse_radio(args)
  local opts, words = {}, {}
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%a_][%w_]*)=(.*)$")
    if key and not RADIO_OPTIONS[key] then
      return nil, ("%s is not an option of :LofiRadio; options: strategy=, seed=, backend="):format(key)
    elseif key == "seed" then
      opts.seed = tonumber(value)
      if not opts.seed or opts.seed < 0 or opts.seed ~= math.floor(opts.seed) then
        return nil, ("seed must be a whole number ≥ 0, not %q"):format(value)
      end
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
  local lofi, ui = require("lofi"), require("lofi.ui")
  local steering = require("lofi.player").radio.active
  local state, err = lofi.radio(opts)
  if err then
    report(err)
    return
  end
  last_radio_prompt = opts.prompt or last_radio_prompt
  if steering and state and state.prompt then
    ui.notify(("lofi: radio steered to %q"):format(state.prompt))
  elseif state then
    ui.notify(("lofi: radio %s %q"):format(state.strategy or "", state.prompt or ""))
  end
end

---:LofiRadio [prompt] [strategy=…] [seed=N] [backend=…] starts the radio (while it plays, a new prompt steers it);
---:LofiRadio stop stops it; without a prompt, asks for one (the last one offered).
function M.radio(cmd)
  local ui = require("lofi.ui")
  if vim.trim(cmd.args) == "stop" then
    if not require("lofi.player").radio.active then
      ui.notify("lofi: the radio is not playing")
      return
    end
    local _, err = require("lofi").radio_stop()
    if err then
      report(err)
    else
      ui.notify("lofi: radio stopped")
    end
    return
  end
  local opts, err = M.parse_radio(cmd.fargs)
  if not opts then
    invalid(err)
    return
  end
  if opts.prompt or (opts.strategy and opts.strategy:find("preset")) then
    start_radio(opts)
    return
  end
  ask_prompt("lofi radio: ", last_radio_prompt, function(prompt)
    opts.prompt = vim.trim(prompt)
    start_radio(opts)
  end)
end

function M.complete_radio(arg_lead)
  return starting_with({ "stop", "strategy=continue", "strategy=same_prompt", "seed=", "backend=musicgen", "backend=ace-step" }, arg_lead)
end

-- ---- the library ---------------------------------------------------------------------------------------------

---"just now", "5 min ago", "3 h ago", "2 days ago".
---@param at number? Unix seconds
---@return string
function M.age(at)
  if not at then
    return "?"
  end
  local seconds = math.max(0, os.time() - at)
  if seconds < 60 then
    return "just now"
  elseif seconds < 3600 then
    return ("%d min ago"):format(math.floor(seconds / 60))
  elseif seconds < 86400 then
    return ("%d h ago"):format(math.floor(seconds / 3600))
  end
  return ("%d days ago"):format(math.floor(seconds / 86400))
end

---One picker line: prompt, duration, backend, age.
---@param track table
---@return string
function M.track_line(track)
  return ("%s  %ss  %s  %s"):format(track.prompt or track.track_id, track.duration_sec and ("%g"):format(track.duration_sec) or "?", track.backend or "?", M.age(track.created_at))
end

---What the picker can do with a track, in the order offered.
M.TRACK_ACTIONS = { "play", "add to playlist", "delete", "regenerate with a new seed" }

---Do `action` with `track` (one of TRACK_ACTIONS).
---@param action string
---@param track table
function M.track_action(action, track)
  local lofi, ui = require("lofi"), require("lofi.ui")
  local what = ui.describe(track.track_id, track)
  if action == "play" then
    local ok, err = lofi.play(track)
    if not ok then
      report(err)
    else
      ui.notify("lofi: playing " .. what)
    end
  elseif action == "add to playlist" and not require("lofi.player").current then
    M.track_action("play", track) -- nothing plays: the playlist starts with it
  elseif action == "add to playlist" then
    local _, err = lofi.playlist.add(track)
    if err then
      report(err)
    else
      ui.notify("lofi: added to the playlist " .. what)
    end
  elseif action == "delete" then
    local _, err = lofi.delete(track)
    if err then
      report(err)
    else
      ui.notify("lofi: deleted " .. what)
    end
  elseif action == "regenerate with a new seed" then
    local _, err = lofi.generate({ prompt = track.prompt, duration_sec = track.duration_sec, backend = track.backend })
    if err then
      report(err)
    end
  end
end

---:LofiTracks: pick a cached track (vim.ui.select, so a picker plugin takes over), then what to do with it.
function M.tracks()
  local lofi, ui = require("lofi"), require("lofi.ui")
  local tracks, err = lofi.tracks()
  if err then
    report(err)
    return
  end
  if #tracks == 0 then
    ui.notify("lofi: no cached track yet (:LofiGenerate makes one)")
    return
  end
  vim.ui.select(tracks, { prompt = "lofi tracks", format_item = M.track_line, kind = "lofi_track" }, function(track)
    if not track then
      return
    end
    vim.ui.select(M.TRACK_ACTIONS, { prompt = ("lofi: %s"):format(ui.shorten(track.prompt or track.track_id, 40)), kind = "lofi_track_action" }, function(action)
      if action then  -- as after the consent question: redraw over the list first, or the result raises hit-enter
        vim.schedule(function()
          pcall(vim.cmd, "redraw")
          M.track_action(action, track)
        end)
      end
    end)
  end)
end

---:LofiSave[!] path [format]: export the track playing (else the most recently played) as wav, flac, ogg or mp3
---(default: from the extension); ! overwrites.
function M.save(cmd)
  local lofi, ui = require("lofi"), require("lofi.ui")
  local path, format = cmd.fargs[1], cmd.fargs[2]
  if not path or #cmd.fargs > 2 then
    invalid(":LofiSave needs a file name, and a format if you like: :LofiSave ~/music/rain.flac [wav|flac|ogg|mp3]")
    return
  end
  local tracks, err = lofi.tracks()
  if err then
    report(err)
    return
  end
  local playing = require("lofi.player").current
  local track = nil
  for _, t in ipairs(tracks) do
    if playing and t.track_id == playing.track_id then
      track = t
    end
  end
  if not track and playing and playing.radio then
    invalid("the radio's stream is not a track of the library: :LofiSave saves a track (play one, or pick it in :LofiTracks)")
    return
  end
  track = track or tracks[1]
  if not track then
    ui.notify("lofi: no cached track to save yet", vim.log.levels.WARN)
    return
  end
  local result, save_err = lofi.save(track, path, format, { overwrite = cmd.bang })
  if save_err then
    if save_err.code == "WRITE_FAILED" then  -- the service says how from RPC; here it is the bang
      save_err.message = save_err.message:gsub("pass overwrite: true to replace it", "use :LofiSave! to replace it")
    end
    report(save_err)
    return
  end
  ui.notify(("lofi: saved %s to %s"):format(ui.describe(track.track_id, track), result.path))
end

function M.complete_save(arg_lead, cmd_line)
  local args = vim.split(cmd_line, "%s+", { trimempty = false })
  if #args <= 2 then
    return vim.fn.getcompletion(arg_lead, "file")
  end
  return vim.tbl_filter(function(item)
    return vim.startswith(item, arg_lead)
  end, { "wav", "flac", "ogg", "mp3" })
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
  local stopped, err = require("lofi").stop()
  if err then
    report(err)
  elseif not stopped then
    ui.notify("lofi: nothing is playing")
  elseif stopped.track_id and not stopped.radio then
    ui.notify("lofi: stopped " .. ui.describe(stopped.track_id))
  else
    ui.notify("lofi: stopped the radio" .. (stopped.prompt and (" %q"):format(stopped.prompt) or ""))
  end
end

---Open the plugin's and the engine's logs (every error is in one of them).
function M.log()
  local paths = require("lofi.ui").log_paths()
  local files = vim.tbl_filter(function(path)
    return vim.fn.filereadable(path) == 1
  end, { paths.plugin, paths.engine, paths.player })
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
  create("LofiPause", M.pause, { desc = "Pause playback" })
  create("LofiResume", M.resume, { desc = "Resume playback" })
  create("LofiToggle", M.toggle, { desc = "Pause or resume playback" })
  create("LofiSkip", M.skip, { desc = "Skip to the next track (crossfaded)" })
  create("LofiStop", M.stop, { desc = "Stop playback (and the radio)" })
  create("LofiVolume", M.volume, { nargs = "?", complete = M.complete_volume, desc = "Set the volume: 0–100, +N or -N" })
  create("LofiRadio", M.radio, {
    nargs = "*",
    complete = M.complete_radio,
    desc = "Start the radio (:LofiRadio lofi hip hop), steer it with a new prompt while it plays, :LofiRadio stop",
  })
  create("LofiTracks", M.tracks, { desc = "Pick a cached track: play, add to the playlist, delete, regenerate" })
  create("LofiSave", M.save, { nargs = "+", bang = true, complete = M.complete_save, desc = "Save the track playing: :LofiSave[!] path [wav|flac|ogg|mp3]" })
  create("LofiCancel", M.cancel, { nargs = "?", complete = M.complete_pending, desc = "Cancel a generation (default: the last queued, else the running one)" })
  create("LofiDownload", function()
    require("lofi").download()
  end, { desc = "Download the model (asks first)" })
  create("LofiLog", M.log, { desc = "Open lofi's plugin and engine logs" })
end

return M
