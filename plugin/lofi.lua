if vim.g.loaded_lofi then
  return
end
vim.g.loaded_lofi = true

require("lofi.commands").register()

vim.api.nvim_create_autocmd("VimLeavePre", {
  group = vim.api.nvim_create_augroup("lofi", { clear = true }),
  desc = "Stop lofi playback and its engine",
  callback = function()
    require("lofi.player").stop()
    if vim.fn.exists("*LofiShutdown") == 1 then
      pcall(vim.fn.LofiShutdown)
    end
  end,
})
