-- :checkhealth lofi (Neovim finds it here, as lua/lofi/health.lua). It sits above every layer and may require any
-- module; :checkhealth alone loads it.
local lofi = require("lofi")
local config = require("lofi.core.config")
local engine = require("lofi.core.engine")
local host = require("lofi.core.host")
local messages = require("lofi.ui.messages")
local schema = require("lofi.schema")

local M = {}

local function check_neovim()
  if vim.fn.has("nvim-0.10") == 1 then
    vim.health.ok("Neovim " .. tostring(vim.version()))
  else
    vim.health.error("Neovim 0.10 or newer is required", { "Upgrade Neovim" })
  end
end

local function check_host()
  -- The remote plugin runs in a host of its own (lua/lofi/core/host.lua): the engine's interpreter, not the user's
  -- python3.
  local python = config.engine_python()
  if not python then
    vim.health.error("the plugin's environment (.venv) is missing", { "Run `make install` in " .. config.root })
  else
    local result = vim.system({ python, "-c", "import pynvim; print(pynvim.__file__)" }, { text = true }):wait()
    if result.code == 0 then
      vim.health.ok(("plugin host %s (%s) imports pynvim"):format(host.NAME, python))
    else
      vim.health.error(("the plugin's interpreter %s cannot import pynvim"):format(python), {
        "Run `make install` in " .. config.root .. " (or install pynvim for setup's `python`)",
      })
    end
  end
  if vim.fn.exists("*LofiRequest") == 1 or vim.fn.exists("#FuncUndefined#LofiRequest") == 1 then
    vim.health.ok("remote plugin registered (no :UpdateRemotePlugins needed)")
  else
    vim.health.error("the remote plugin is not registered", { "Check that plugin/lofi.lua is loaded (the plugin is on 'runtimepath')" })
  end
end

local function check_engine()
  local python = config.engine_python()
  if not python then
    vim.health.error("the engine's environment is missing", { "Run `make install` in " .. config.root })
    return
  end
  local probe = "import onnxruntime, numpy, tokenizers, soundfile, huggingface_hub; "
    .. "print(onnxruntime.__version__ + ' ' + ','.join(onnxruntime.get_available_providers()))"
  local result = vim.system({ python, "-c", probe }, { text = true }):wait()
  if result.code ~= 0 then
    vim.health.error("the engine's interpreter " .. python .. " cannot import its packages", {
      vim.trim(result.stderr or ""),
      "Run `make install` in " .. config.root,
    })
    return
  end
  local version, providers = vim.trim(result.stdout):match("^(%S+) (.*)$")
  vim.health.ok(("engine interpreter %s (onnxruntime %s)"):format(python, version))
  vim.health.info("execution providers: " .. providers)
  local device = config.options.model.device
  local wanted = ({ cuda = "CUDAExecutionProvider", metal = "CoreMLExecutionProvider" })[device]
  if wanted and not providers:find(wanted, 1, true) and not config.engine_command() then -- elsewhere: checked there
    vim.health.error(("model.device = %q but %s is not available"):format(device, wanted), {
      device == "cuda" and "Install onnxruntime-gpu in the plugin's .venv" or "Use an onnxruntime build with CoreML",
    })
  end
end

local function check_player()
  local cmd = config.options.player.cmd
  local program = cmd and cmd[1] or vim.split(schema.settings.player_command.default, " ")[1]
  if vim.fn.executable(program) == 1 then
    vim.health.ok(("audio player: %s (fed by the service's player process)"):format(program))
  else
    vim.health.warn(("audio player %s not found; tracks are generated but not played"):format(program), {
      "Install mpv: `sudo apt install mpv` (Debian/Ubuntu), `sudo dnf install mpv` (Fedora), `brew install mpv` (macOS)",
      "Or set player.cmd = { '/path/to/mpv', '--flag' } in setup() (it is fed raw audio on its standard input)",
    })
  end
end

---@return table|boolean|nil remote the engine elsewhere's answer (true when it could not be reached), nil: none
local function check_remote_engine()
  local command = config.engine_command()
  if not command then
    return nil
  end
  local remote, err = engine.request("engine_check")
  if err then
    vim.health.error(("the engine at the end of `%s` cannot be reached: %s: %s"):format(command, err.code, err.message), {
      "Try the command in a terminal: it must start without asking anything (ssh keys, not a password)",
      "On that machine, `lofi engine --stdio` must be on the PATH of a non-interactive shell (or give its full path in engine.command)",
    })
    return true
  end
  vim.health.ok(("engine on %s reached through `%s`: lofi.nvim %s, protocol %d"):format(remote.host, command, remote.version, remote.protocol))
  vim.health.info(("execution providers on %s: %s"):format(remote.host, table.concat(remote.providers or {}, ", ")))
  if remote.device == "cuda" and not vim.tbl_contains(remote.providers or {}, "CUDAExecutionProvider") then
    vim.health.error(("model.device = \"cuda\" but %s has no CUDA provider"):format(remote.host), { "Install onnxruntime-gpu in its .venv" })
  end
  if remote.available and remote.available[remote.variant] then
    vim.health.ok(("the %s model is on %s"):format(remote.variant, remote.host))
  else
    vim.health.warn(("the %s model is not on %s yet"):format(remote.variant, remote.host), {
      "Generate once and agree to the download (it goes to " .. remote.host .. "), or run :LofiDownload",
    })
  end
  return remote
end

local function check_model_and_cache()
  local status, err = engine.request("status")
  if err then
    vim.health.error(("cannot ask the engine: %s: %s"):format(err.code, err.message))
    return
  end
  local dir = status.model_dir
  local remote = check_remote_engine()
  if remote then
    dir = nil -- the model is there, not here (checked above)
  elseif dir and vim.fn.isdirectory(dir) == 0 then
    vim.health.error(("model.dir %s does not exist"):format(dir), {
      "Point model.dir at a folder of MusicGen model files (config.json, tokenizer.json, *.onnx)",
      "or remove model.dir from setup() to download the model (:LofiDownload)",
    })
  elseif dir then
    local needed = { "config.json", "tokenizer.json", "text_encoder.onnx", "encodec_decode.onnx" }
    local missing = vim.tbl_filter(function(name)
      return vim.fn.filereadable(dir .. "/" .. name) == 0
    end, needed)
    local decoder = vim.fn.filereadable(dir .. "/decoder_model_merged.onnx") == 1
      or vim.fn.filereadable(dir .. "/decoder_model.onnx") == 1
    if not decoder then
      table.insert(missing, "decoder_model_merged.onnx (or decoder_model.onnx + decoder_with_past_model.onnx)")
    end
    if #missing > 0 then
      vim.health.error(("model.dir %s lacks %s"):format(dir, table.concat(missing, ", ")), {
        "Point model.dir at a folder with the Hub's file names (see :help lofi-setup)",
      })
    else
      vim.health.ok(("model %s in %s"):format(status.model_version, dir))
    end
  elseif status.model_available then
    vim.health.ok(("model %s available"):format(status.model_version))
  else
    vim.health.warn(("the %s model is not downloaded yet"):format(status.variant), {
      "Run :LofiDownload, or generate once and accept the download, or set model.dir to a folder of model files",
    })
  end
  if type(remote) == "table" then -- ACE-Step's export is there too
    local version = remote.model_versions and remote.model_versions["ace-step"]
    if version then
      vim.health.ok(("ACE-Step export %s on %s"):format(version, remote.host))
    else
      local report = status.backend == "ace-step" and vim.health.error or vim.health.info
      report(("no ACE-Step export on %s (needed for backend ace-step): %s"):format(remote.host, (remote.model_errors or {})["ace-step"] or ""))
    end
  elseif remote then
    -- unreachable: said above
  elseif status.ace_step_available then
    vim.health.ok("ACE-Step export found in " .. status.ace_step_model_dir)
  else
    local report = status.backend == "ace-step" and vim.health.error or vim.health.info
    report(("no ACE-Step export in %s (needed for backend ace-step)"):format(status.ace_step_model_dir), {
      "Export a checkpoint once: python -m lofi_engine.dev.export_ace_step CHECKPOINT_DIR --out DIR (see :help lofi-ace-step)",
      "then set ace_step.dir = DIR in setup()",
    })
  end
  local dir = status.cache_dir
  if vim.fn.mkdir(dir, "p") == 1 or vim.fn.isdirectory(dir) == 1 then
    local probe = dir .. "/.lofi-health"
    local ok = pcall(vim.fn.writefile, { "" }, probe)
    vim.fn.delete(probe)
    if ok then
      local tracks = lofi.tracks()
      local bytes = 0
      for _, t in ipairs(tracks) do
        bytes = bytes + (t.size_bytes or 0)
      end
      vim.health.ok(("cache %s writable: %d track%s, %.1f MB"):format(dir, #tracks, #tracks == 1 and "" or "s", bytes / 1e6))
    else
      vim.health.error("cache directory is not writable: " .. dir)
    end
  else
    vim.health.error("cannot create the cache directory " .. dir)
  end
  if status.log_warning and status.log_warning ~= vim.NIL then
    messages.use_log_dir(vim.fs.dirname(status.log_path))
    vim.health.warn(status.log_warning, { "make Neovim's state folder (stdpath('state')) writable" })
  end
  local logs = messages.log_paths()
  vim.health.info(("logs (:LofiLog): %s, %s, %s"):format(logs.plugin, status.log_path or logs.engine, logs.player))
end

function M.check()
  vim.health.start("lofi.nvim")
  check_neovim()
  check_host()
  check_engine()
  check_player()
  check_model_and_cache()
end

return M
