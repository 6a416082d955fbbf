-- The remote plugin's own python3 host. rplugin/python3/lofi stays a pynvim remote plugin, but it is hosted by the
-- interpreter of the plugin's .venv (made by `make install`, which gives it pynvim) or setup's `python`, under a host
-- of its own: the user's python3 provider (g:python3_host_prog, `:python3`, other remote plugins) is left alone, and
-- neither :UpdateRemotePlugins nor a manifest is needed. The functions are declared here, started on first call.
local config = require("lofi.core.config")

local M = {}

---The host's name for remote#host#Register (Neovim's own python3 host is "python3").
M.NAME = "lofi_python3"

---The remote plugin's folder, as pynvim's host is handed it (its handlers are named "<path>:function:<name>").
M.PLUGIN = config.root .. "/rplugin/python3/lofi"

---The environment variable that tells the remote plugin it runs in this host; in any other host (the user's python3
---host during :UpdateRemotePlugins) it declares nothing, so the functions are never registered twice.
M.MARKER = "LOFI_NVIM_HOST"

---What the remote plugin serves (the specs :UpdateRemotePlugins would have written into the manifest).
M.SPECS = {
  { type = "function", name = "LofiRequest", sync = 1, opts = vim.empty_dict() },
  { type = "function", name = "LofiShutdown", sync = 1, opts = vim.empty_dict() },
}

---Start the host process (remote#host#Require calls this on the first LofiRequest): pynvim's host entry point, run
---by the engine's interpreter, the way Neovim starts its python3 host (runtime/lua/vim/provider/python.lua).
---@param host {name: string, orig_name: string}
---@return integer channel
function M.start(host)
  local python = config.engine_python()
  if not python then
    error(("lofi.nvim: the plugin's environment is missing: run `make install` in %s"):format(config.root), 0)
  end
  local argv = {
    python,
    "-c",
    "import sys; sys.path = [p for p in sys.path if p != '']; import pynvim; pynvim.start_host()",
  }
  for _, plugin in ipairs(vim.fn["remote#host#PluginsForHost"](host.name)) do
    table.insert(argv, plugin.path)
  end
  return vim.fn["provider#Poll"](argv, host.orig_name, "$NVIM_PYTHON_LOG_FILE", { overlapped = true, env = { [M.MARKER] = "1" } })
end

---Declare the host and the plugin's functions (FuncUndefined stubs: nothing starts until the first call).
function M.register()
  vim.fn["remote#host#Register"](M.NAME, "*", M.start)
  for _, plugin in ipairs(vim.fn["remote#host#PluginsForHost"](M.NAME)) do
    if plugin.path == M.PLUGIN then
      return
    end
  end
  vim.fn["remote#host#RegisterPlugin"](M.NAME, M.PLUGIN, M.SPECS)
end

return M
