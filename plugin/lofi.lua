if vim.g.loaded_lofi then
  return
end
vim.g.loaded_lofi = true

-- The remote plugin runs in a python3 host of its own (the plugin's .venv): no :UpdateRemotePlugins, no pynvim
-- needed in the user's python3, their python3 provider untouched.
require("lofi.host").register()
require("lofi.commands").register()

vim.api.nvim_create_autocmd("VimLeavePre", {
  group = vim.api.nvim_create_augroup("lofi", { clear = true }),
  desc = "Stop lofi playback and its engine",
  callback = function()
    -- Nothing here may wait on a prompt: the player is killed, and the remote plugin (only when its host runs, i.e.
    -- LofiRequest was called) stops the engine process before Neovim closes the host's channel.
    pcall(function()
      require("lofi.player").stop()
    end)
    if vim.fn.exists("*LofiRequest") == 1 then
      pcall(vim.fn.LofiShutdown)
    end
  end,
})
