if vim.g.loaded_lofi then
  return
end
vim.g.loaded_lofi = true

-- A manual runtimepath set-up (no plugin manager) has no doc/tags: make them, so :help lofi works. Two cheap checks
-- when they exist; nothing when the folder is read-only.
do
  local doc = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h:h") .. "/doc"
  if vim.fn.filereadable(doc .. "/tags") == 0 and vim.fn.filewritable(doc) == 2 then
    pcall(vim.cmd.helptags, vim.fn.fnameescape(doc))
  end
end

-- The remote plugin runs in a python3 host of its own (the plugin's .venv): no :UpdateRemotePlugins, no pynvim
-- needed in the user's python3, their python3 provider untouched.
require("lofi.core.host").register()
require("lofi.commands").register()
require("lofi.commands.keymaps").define() -- <Plug>(lofi-…) only: no key is mapped unless setup({keymaps = …}) asks

vim.api.nvim_create_autocmd("VimLeavePre", {
  group = vim.api.nvim_create_augroup("lofi", { clear = true }),
  desc = "Stop lofi playback and its engine",
  callback = function()
    -- Nothing here may wait on a prompt: the remote plugin (only when its host runs, i.e. LofiRequest was called)
    -- closes the engine client, which stops the engine process and the player process (and its mpv) before Neovim
    -- closes the host's channel.
    if vim.fn.exists("*LofiRequest") == 1 then
      pcall(vim.fn.LofiShutdown)
    end
    pcall(function()
      require("lofi.state.player").reset()
    end)
  end,
})
