-- :checkhealth lofi
local M = {}

local config = require("lofi.config")

local function check_neovim()
  if vim.fn.has("nvim-0.10") == 1 then
    vim.health.ok("Neovim " .. tostring(vim.version()))
  else
    vim.health.error("Neovim 0.10 or newer is required", { "Upgrade Neovim" })
  end
end

local function check_host()
  if vim.fn.has("python3") == 1 then
    local host = vim.g.python3_host_prog or "python3 on PATH"
    vim.health.ok("python3 host (" .. host .. ") imports pynvim")
  else
    vim.health.error("the python3 host is not available (pynvim missing?)", {
      "Install pynvim for the python Neovim uses, or set g:python3_host_prog to the plugin's .venv/bin/python",
      "Run :checkhealth provider.python for details",
    })
  end
  if vim.fn.exists("*LofiRequest") == 1 or vim.fn.exists("#FuncUndefined#LofiRequest") == 1 then
    vim.health.ok("remote plugin registered")
  else
    vim.health.error("the remote plugin is not registered", { "Run :UpdateRemotePlugins and restart Neovim" })
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
  if wanted and not providers:find(wanted, 1, true) then
    vim.health.error(("model.device = %q but %s is not available"):format(device, wanted), {
      device == "cuda" and "Install onnxruntime-gpu in the plugin's .venv" or "Use an onnxruntime build with CoreML",
    })
  end
end

local function check_player()
  local cmd = require("lofi.player").command(false)
  if cmd then
    vim.health.ok("audio player: " .. cmd[1])
  else
    vim.health.warn("no audio player found; tracks are generated but not played", {
      "Install mpv (or ffplay, afplay, pw-play, paplay, aplay), or set player.cmd",
    })
  end
end

local function check_model_and_cache()
  local status, err = require("lofi.engine").request("status")
  if err then
    vim.health.error(("cannot ask the engine: %s: %s"):format(err.code, err.message))
    return
  end
  if status.model_available then
    vim.health.ok(("model %s available%s"):format(status.model_version, status.model_dir and (" in " .. status.model_dir) or ""))
  else
    vim.health.warn(("the %s model is not downloaded yet"):format(status.variant), {
      "Run :LofiDownload, or generate once and accept the download, or set model.dir to a folder of model files",
    })
  end
  if status.ace_step_available then
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
      local tracks = require("lofi").tracks()
      local bytes = 0
      for _, t in ipairs(tracks) do
        bytes = bytes + (t.size_bytes or 0)
      end
      vim.health.ok(("cache %s writable: %d tracks, %.1f MB"):format(dir, #tracks, bytes / 1e6))
    else
      vim.health.error("cache directory is not writable: " .. dir)
    end
  else
    vim.health.error("cannot create the cache directory " .. dir)
  end
  vim.health.info("engine log: " .. status.log_path)
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
