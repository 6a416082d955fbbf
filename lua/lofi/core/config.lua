---@class lofi.ModelConfig
---@field variant "small"|"small-int8"|"small-fp16"|"small-int4"|nil Model variant (nil: small, or small-fp16 with device cuda/metal)
---@field dir string? A folder of model files (Hub layout); skips the download
---@field encodec_dir string? EnCodec's weights (facebook/encodec_32khz's config.json and model.safetensors), to continue your own audio
---@field device "auto"|"cpu"|"cuda"|"metal" Where inference runs
---@field threads integer? CPU threads (nil: all cores)

---@class lofi.EngineConfig
---@field host string? Run the engine on this machine over ssh (`ssh -T <host> lofi engine --stdio`); the player, queue and tracks stay here
---@field command string[]? Any other command that starts `lofi engine --stdio` somewhere (wins over host)

---@class lofi.AceStepConfig
---@field dir string? An ACE-Step export made with `python -m lofi_engine.dev.export_ace_step` (nil: <cache>/models/ace-step)
---@field variant "fp32"|"int8" fp32, or int8 weight-only encoders and DiT (4.1 GB of weights instead of 11.5 GB)

---@class lofi.CacheConfig
---@field dir string? Where tracks are kept (nil: $XDG_CACHE_HOME/lofi.nvim)
---@field max_size integer Cache size limit in bytes; least recently played tracks go first
---@field optimized boolean Keep ONNX Runtime's optimized model on disk: loads ≈ 2× faster, ≈ 3.5 GB of disk for small

---@class lofi.PlayerConfig
---@field cmd string[]? The audio player the service's player process feeds (mpv and its options; the raw-audio input options are appended; nil: the engine's default mpv command)
---@field loop boolean Start the playlist over at its end; a single track loops, its tail crossfaded into its head
---@field crossfade_sec number Seconds consecutive tracks overlap (0: none)
---@field volume integer Playback volume at start, 0 to 100

---@class lofi.RadioConfig
---@field window_sec number Radio (continue): seconds of music a window composes, its context included
---@field context_sec number Radio (continue): seconds of the piece so far each window continues
---@field piece_sec number Radio (same_prompt, preset_cycle, random_preset): seconds a piece lasts

---@class lofi.KeymapsConfig
---@field toggle string|false? Normal-mode keys for <Plug>(lofi-toggle) (nil/false: none)
---@field pause string|false?
---@field resume string|false?
---@field skip string|false?
---@field stop string|false?
---@field radio string|false?
---@field volume_up string|false?
---@field volume_down string|false?
---@field tracks string|false?
---@field generate string|false?

---@class lofi.Config
---@field backend "musicgen"|"ace-step" Backend of a generation that names none: MusicGen (5–120 s, 32 kHz mono) or ACE-Step (10–240 s, 48 kHz stereo)
---@field model lofi.ModelConfig
---@field engine lofi.EngineConfig
---@field ace_step lofi.AceStepConfig
---@field cache lofi.CacheConfig
---@field duration_sec number Default length of a generated track: 5 to 120 seconds with musicgen, 10 to 240 with ace-step
---@field notify boolean Show start/end notifications and the progress line (errors are always shown)
---@field player lofi.PlayerConfig
---@field radio lofi.RadioConfig
---@field keymaps lofi.KeymapsConfig Opt-in key mappings (none unless asked)
---@field autoplay boolean Play a track as soon as it is generated
---@field python string? Interpreter that runs the engine (nil: the plugin's .venv made by `make install`)

local schema = require("lofi.schema") -- generated from the engine's settings: the one source of these values
local settings = schema.settings

local M = {}

---@type lofi.Config
M.defaults = {
  backend = settings.backend.default,
  model = { variant = nil, dir = nil, encodec_dir = nil, device = settings.device.default, threads = nil },
  engine = { host = nil, command = nil },
  ace_step = { dir = nil, variant = settings.ace_step_variant.default },
  cache = { dir = nil, max_size = settings.cache_max_bytes.default, optimized = settings.optimized_cache.default },
  duration_sec = schema.default_duration_sec,
  notify = true,
  player = {
    cmd = nil,
    loop = settings.playlist_loop.default,
    crossfade_sec = settings.crossfade_sec.default,
    volume = settings.volume.default,
  },
  radio = {
    window_sec = settings.radio_window_sec.default,
    context_sec = settings.radio_context_sec.default,
    piece_sec = settings.radio_piece_sec.default,
  },
  keymaps = {},
  autoplay = true,
  python = nil,
}

---@type lofi.Config
M.options = vim.deepcopy(M.defaults)

---Which engine setting (lua/lofi/schema.lua's settings, Python's rules) each setup() option is; the rest are the
---Lua side's own (notify, autoplay, python, keymaps) or a request's (duration_sec).
M.SETTING_OF = {
  backend = "backend",
  ["model.variant"] = "variant",
  ["model.dir"] = "model_dir",
  ["model.encodec_dir"] = "encodec_dir",
  ["model.device"] = "device",
  ["model.threads"] = "threads",
  ["engine.command"] = "engine_command",
  ["ace_step.dir"] = "ace_step_model_dir",
  ["ace_step.variant"] = "ace_step_variant",
  ["cache.dir"] = "cache_dir",
  ["cache.max_size"] = "cache_max_bytes",
  ["cache.optimized"] = "optimized_cache",
  ["player.cmd"] = "player_command",
  ["player.loop"] = "playlist_loop",
  ["player.crossfade_sec"] = "crossfade_sec",
  ["player.volume"] = "volume",
  ["radio.window_sec"] = "radio_window_sec",
  ["radio.context_sec"] = "radio_context_sec",
  ["radio.piece_sec"] = "radio_piece_sec",
}

---The setup() option of an engine setting.
local OPTION_OF = {}
for option, name in pairs(M.SETTING_OF) do
  OPTION_OF[name] = option
end

---An engine setting's name, and the others its words name, as setup() options ("radio_window_sec" → "radio.window_sec").
---@param text string
---@return string
function M.in_setup_words(text)
  return (text:gsub("[%a_]+", function(word)
    return OPTION_OF[word] or word
  end))
end

---Seconds of audio each backend makes: {min, max} by backend name.
M.durations = schema.durations

---A value as the user wrote it: strings quoted, tables on one line.
---@param v any
---@return string
function M.show(v)
  if type(v) == "string" then
    return ("%q"):format(v)
  end
  return (vim.inspect(v, { newline = " ", indent = "" }))
end

---The value of a setup() option ("radio.window_sec") in `opts`.
local function option_value(opts, option)
  local value = opts
  for key in option:gmatch("[^.]+") do
    value = type(value) == "table" and value[key] or nil
  end
  return value
end

---Whether `value` keeps the engine setting `name`'s rule (its kind, range, choices; lua/lofi/schema.lua).
local function keeps_rule(name, value, opts)
  local rule = settings[name]
  if value == nil then
    return rule.optional == true or rule.default ~= nil or name == "cache_dir" or name == "player_command"
  end
  local kind = rule.kind
  if kind == "choice" then
    return vim.tbl_contains(rule.choices, value)
  elseif kind == "bool" then
    return type(value) == "boolean"
  elseif kind == "path" then
    return type(value) == "string" and vim.trim(value) ~= ""
  elseif kind == "command" then -- setup() takes it as a list: { "mpv", "--no-video" }
    if not vim.islist(value) or #value == 0 then
      return false
    end
    for _, arg in ipairs(value) do
      if type(arg) ~= "string" then
        return false
      end
    end
    return true
  end
  if type(value) ~= "number" or value ~= value or (kind == "int" and value ~= math.floor(value)) then
    return false
  end
  if (rule.min and value < rule.min) or (rule.max and value > rule.max) then
    return false
  end
  local bound = rule.less_than and option_value(opts, OPTION_OF[rule.less_than])
  return not (type(bound) == "number" and value >= bound)
end

---What an engine setting takes, in setup()'s words.
local function expects(name)
  if name == "player_command" then
    return "a list of strings like { 'mpv', '--no-video' }, or nil"
  elseif name == "engine_command" then
    return "a list of strings like { 'ssh', '-T', 'box', 'lofi', 'engine', '--stdio' }, or nil"
  end
  return M.in_setup_words(settings[name].expects):gsub("or unset$", "or nil")
end

---@param opts lofi.Config
---@return string? err the first bad option
local function validate(opts)
  for _, group in ipairs({ "model", "engine", "ace_step", "cache", "player", "radio", "keymaps" }) do
    if type(opts[group]) ~= "table" then
      return ("%s must be a table, not %s"):format(group, M.show(opts[group]))
    end
  end
  local options = vim.tbl_keys(M.SETTING_OF)
  table.sort(options)
  table.insert(options, 1, "backend") -- first: the duration's range depends on it
  for _, option in ipairs(options) do
    local name, value = M.SETTING_OF[option], option_value(opts, option)
    if not keeps_rule(name, value, opts) then
      return ("%s must be %s, not %s"):format(option, expects(name), M.show(value))
    end
  end
  local range = M.durations[opts.backend]
  if type(opts.duration_sec) ~= "number" or opts.duration_sec < range[1] or opts.duration_sec > range[2] then
    return ("duration_sec must be a number from %g to %g (backend %s), not %s"):format(range[1], range[2], opts.backend, M.show(opts.duration_sec))
  end
  for _, flag in ipairs({ "notify", "autoplay" }) do
    if type(opts[flag]) ~= "boolean" then
      return ("%s must be a boolean, not %s"):format(flag, M.show(opts[flag]))
    end
  end
  local host = opts.engine.host
  if host ~= nil and (type(host) ~= "string" or not host:match("^[%w%.%-_@:%[%]]+$")) then
    return ("engine.host must be a host ssh can reach (box, me@box.lan), or nil, not %s"):format(M.show(host))
  end
  if opts.python ~= nil and type(opts.python) ~= "string" then
    return ("python must be a string or nil, not %s"):format(M.show(opts.python))
  end
  local names = vim.tbl_keys(opts.keymaps)
  table.sort(names, function(a, b)
    return tostring(a) < tostring(b)
  end)
  for _, name in ipairs(names) do
    local v = opts.keymaps[name]
    if not (v == false or (type(v) == "string" and v ~= "")) then
      return ("keymaps.%s must be keys like '<leader>mp', or false, not %s"):format(tostring(name), M.show(v))
    end
  end
  return nil
end

---Every option setup() knows (also those whose default is nil), by table.
M.known = {
  [""] = { "backend", "model", "engine", "ace_step", "cache", "duration_sec", "notify", "player", "radio", "keymaps", "autoplay", "python" },
  model = { "variant", "dir", "encodec_dir", "device", "threads" },
  engine = { "host", "command" },
  ace_step = { "dir", "variant" },
  cache = { "dir", "max_size", "optimized" },
  player = { "cmd", "loop", "crossfade_sec", "volume" },
  radio = { "window_sec", "context_sec", "piece_sec" },
  keymaps = {}, -- the names lua/lofi/ui/keymaps.lua declares (it fills this in when it loads)
}

---Edit distance (insertions, deletions, substitutions, swaps of neighbours).
local function distance(a, b)
  local d = {}
  for i = 0, #a do
    d[i] = { [0] = i }
  end
  for j = 0, #b do
    d[0][j] = j
  end
  for i = 1, #a do
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      d[i][j] = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:sub(i, i) == b:sub(j - 1, j - 1) and a:sub(i - 1, i - 1) == b:sub(j, j) then
        d[i][j] = math.min(d[i][j], d[i - 2][j - 2] + 1)
      end
    end
  end
  return d[#a][#b]
end

---The candidate closest to `word` (nil when none is within half the word's length).
---@param word string
---@param candidates string[]
---@return string?
function M.closest(word, candidates)
  local best, best_distance = nil, math.huge
  for _, candidate in ipairs(candidates) do
    local d = distance(word:lower(), candidate:lower())
    if d < best_distance then
      best, best_distance = candidate, d
    end
  end
  if best and best_distance <= math.max(2, math.ceil(#word / 2)) then
    return best
  end
  return nil
end

---The first key setup() does not know, as a message naming the closest one it does (nil: all known).
---@return string?
local function check_keys(opts, path)
  local known = M.known[path]
  for key, value in pairs(opts) do
    local name = path == "" and tostring(key) or (path .. "." .. tostring(key))
    if type(key) ~= "string" or not vim.tbl_contains(known, key) then
      local near = type(key) == "string" and M.closest(key, known) or nil
      local hint = near and ("; did you mean %q?"):format(path == "" and near or (path .. "." .. near)) or ""
      return ("unknown option %q%s (options: %s; see :help lofi-setup)"):format(name, hint, table.concat(known, ", "))
    end
    if M.known[name] and type(value) == "table" then
      local err = check_keys(value, name)
      if err then
        return err
      end
    end
  end
  return nil
end

---Merge user options over the defaults. Raises nothing: on a bad option it keeps the options it had and returns
---false and a message for the user ("lofi: duration_sec must be …"; an unknown key names the closest one).
---@param opts table?
---@return boolean ok, string? err
function M.setup(opts)
  if opts ~= nil and type(opts) ~= "table" then
    return false, ("lofi: setup() takes a table of options, not %s (see :help lofi-setup)"):format(M.show(opts))
  end
  local err = check_keys(opts or {}, "")
  local merged
  if not err then
    merged = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts or {})
    err = validate(merged)
  end
  if err then
    return false, "lofi: " .. err .. " (setup() kept the options it had)"
  end
  M.options = merged
  return true
end

---The plugin's folder, where `make install` makes `.venv` (this file is lua/lofi/core/config.lua in it).
M.root = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h:h:h:h")

---The interpreter that runs the engine (the one place that decides it): setup's `python`, else the plugin's
---`.venv`; nil when neither exists (the remote plugin then uses its own host's).
---@return string?
function M.engine_python()
  if M.options.python then
    return M.options.python
  end
  local venv = M.root .. (vim.fn.has("win32") == 1 and "/.venv/Scripts/python.exe" or "/.venv/bin/python")
  return vim.fn.executable(venv) == 1 and venv or nil
end

---An argument list as one string that Python's shlex.split (POSIX rules) turns back into the same list: the
---engine's `player_command` setting. It is split, never run by a shell.
---@param args string[]
---@return string
function M.shell_join(args)
  return table.concat(
    vim.tbl_map(function(arg)
      if arg:match("^[%w@%%+=:,./_-]+$") then
        return arg
      end
      return "'" .. arg:gsub("'", [['"'"']]) .. "'"
    end, args),
    " "
  )
end

---The command that reaches the engine elsewhere (engine.command, or ssh to engine.host), as one line; nil: here.
---@return string?
function M.engine_command()
  local o = M.options.engine
  if o.command then
    return M.shell_join(o.command)
  elseif o.host then
    return M.shell_join({ "ssh", "-T", o.host, "lofi", "engine", "--stdio" })
  end
  return nil
end

---The settings the remote plugin hands to the engine (the engine's own schema: `lofi_engine.shared.settings.EngineConfig`,
---whose field names are the keys of `require("lofi.schema").settings`).
---@return table
function M.remote_settings()
  local o = M.options
  local function expand(path)
    return path and vim.fs.normalize(vim.fn.fnamemodify(vim.fn.expand(path), ":p")) or vim.NIL
  end
  return {
    engine = {
      backend = o.backend,
      ace_step_model_dir = expand(o.ace_step.dir),
      ace_step_variant = o.ace_step.variant,
      variant = o.model.variant or vim.NIL,
      model_dir = expand(o.model.dir),
      encodec_dir = expand(o.model.encodec_dir),
      device = o.model.device,
      threads = o.model.threads or vim.NIL,
      engine_command = M.engine_command() or vim.NIL,
      cache_dir = expand(o.cache.dir),
      cache_max_bytes = math.floor(o.cache.max_size),
      optimized_cache = o.cache.optimized,
      player_command = o.player.cmd and M.shell_join(o.player.cmd) or vim.NIL,
      playlist_loop = o.player.loop,
      crossfade_sec = o.player.crossfade_sec,
      volume = math.floor(o.player.volume),
      radio_window_sec = o.radio.window_sec,
      radio_context_sec = o.radio.context_sec,
      radio_piece_sec = o.radio.piece_sec,
    },
    python = M.engine_python() or vim.NIL,
    log_dir = vim.fn.stdpath("state") .. "/lofi",
  }
end

return M
