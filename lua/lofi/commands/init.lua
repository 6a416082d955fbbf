-- The :Lofi* commands, with completion: :LofiGenerate, :LofiContinue, :LofiQueue, :LofiCancel (generate.lua); the player's :LofiPlay,
-- :LofiPause, :LofiResume, :LofiToggle, :LofiSkip, :LofiStop, :LofiVolume, :LofiSeek, :LofiShuffle, :LofiNow (player.lua); :LofiRadio (radio.lua); the
-- library's :LofiTracks and :LofiSave (library.lua); :LofiDownload and :LofiLog (misc.lua). Each module reads the
-- command's arguments and calls the Lua API (or a lower layer); the commands are where errors are notified (the Lua
-- API returns them).
local generate = require("lofi.commands.generate")
local library = require("lofi.commands.library")
local misc = require("lofi.commands.misc")
local player = require("lofi.commands.player")
local radio = require("lofi.commands.radio")

local M = {}

function M.register()
  local create = vim.api.nvim_create_user_command
  create("LofiGenerate", generate.generate, {
    nargs = "*",
    complete = generate.complete_generate,
    desc = "Generate music from a prompt: :LofiGenerate lofi hip hop duration=30 seed=1 priority=high backend=ace-step",
  })
  create("LofiContinue", generate.continue, {
    nargs = "*",
    complete = generate.complete_continue,
    desc = "Continue a file or a track (default: the one playing): :LofiContinue song.wav [prompt] duration=30",
  })
  create("LofiQueue", generate.queue, { desc = "Show the running and pending generations (updates while open)" })
  create("LofiPlay", player.play, { nargs = "?", complete = player.complete_tracks, desc = "Play a cached track (default: the most recently played)" })
  create("LofiPause", player.pause, { desc = "Pause playback" })
  create("LofiResume", player.resume, { desc = "Resume playback" })
  create("LofiToggle", player.toggle, { desc = "Pause or resume playback" })
  create("LofiSkip", player.skip, { desc = "Skip to the next track (crossfaded)" })
  create("LofiStop", player.stop, { desc = "Stop playback (and the radio)" })
  create("LofiVolume", player.volume, { nargs = "?", complete = player.complete_volume, desc = "Set the volume: 0–100, +N or -N" })
  create("LofiSeek", player.seek, { nargs = 1, complete = player.complete_seek, desc = "Seek in the track: 1:20 (from its start), +30 or -10 (seconds)" })
  create("LofiShuffle", player.shuffle, { nargs = "?", complete = player.complete_shuffle, desc = "Shuffle the playlist: on, off, or turn it over" })
  create("LofiNow", player.now, { desc = "What plays: prompt, position / length, volume" })
  create("LofiRadio", radio.radio, {
    nargs = "*",
    complete = radio.complete_radio,
    desc = "Start the radio (:LofiRadio lofi hip hop), steer it with a new prompt while it plays, :LofiRadio stop",
  })
  create("LofiTracks", library.tracks, { desc = "Pick a cached track: play, add to the playlist, delete, regenerate" })
  create("LofiSave", library.save, { nargs = "+", bang = true, complete = library.complete_save, desc = "Save the track playing: :LofiSave[!] [++p] path [wav|flac|ogg|mp3]" })
  create("LofiCancel", generate.cancel, { nargs = "?", complete = generate.complete_pending, desc = "Cancel a generation (default: the last queued, else the running one)" })
  create("LofiDownload", misc.download, { desc = "Download the model (asks first)" })
  create("LofiLog", misc.log, { desc = "Open lofi's plugin and engine logs" })
end

return M
