-- Playback through an external player, spawned with an argument list (never a shell string), stdin closed.
-- This module owns what is playing (`current`); others read it and change it only through these functions.
local config = require("lofi.config")

local M = {}

---Known players, best first: the command before the file, and the flag that loops natively (if any).
M.known = {
  -- quiet, but errors still reach stderr (reported when the player fails)
  { "mpv", args = { "--no-video", "--no-input-terminal", "--msg-level=all=error" }, loop = { "--loop-file=inf" } },
  { "ffplay", args = { "-nodisp", "-autoexit", "-loglevel", "error" }, loop = { "-loop", "0" } },
  { "afplay", args = {} },
  { "pw-play", args = {} },
  { "paplay", args = {} },
  { "aplay", args = { "-q" } },
}

---@class lofi.Playing
---@field path string? The track's file (nil while a streamed track is still being generated)
---@field track_id string?
---@field socket string? mpv's IPC socket of a streamed track
---@field process vim.SystemObj
---@field stopped boolean

---What is playing now; read-only outside this module.
---@type lofi.Playing?
M.current = nil

---The player command (without the file) and whether it loops by itself; nil when none is installed.
---@param loop boolean
---@return string[]?, boolean
function M.command(loop)
  local custom = config.options.player.cmd
  if custom then
    return vim.deepcopy(custom), false
  end
  for _, player in ipairs(M.known) do
    if vim.fn.executable(player[1]) == 1 then
      local cmd = vim.list_extend({ player[1] }, player.args)
      if loop and player.loop then
        return vim.list_extend(cmd, player.loop), true
      end
      return cmd, false
    end
  end
  return nil, false
end

---Stop whatever is playing; given a `process`, only when that is what is playing.
---@param process vim.SystemObj?
function M.stop(process)
  local playing = M.current
  if not playing or (process and playing.process ~= process) then
    return
  end
  M.current = nil
  playing.stopped = true
  pcall(playing.process.kill, playing.process, "sigterm")
end

---@class lofi.PlayingTrack
---@field track_id string?
---@field path string?
---@field socket string?

---What a failed player said: its last lines on stderr, shortened.
---@param stderr string?
---@return string
local function last_words(stderr)
  local lines = vim.tbl_filter(function(l)
    return vim.trim(l) ~= ""
  end, vim.split(stderr or "", "\n", { plain = true }))
  local said = table.concat(vim.list_slice(lines, math.max(1, #lines - 2)), " | ")
  return vim.trim(said)
end

---Start a player command (an argument list, stdin closed) as what is playing now. When it exits with an error
---(and was not stopped), the error is reported with the player's own message.
---@param cmd string[]
---@param track lofi.PlayingTrack what it plays
---@param on_exit fun(playing: lofi.Playing, code: integer)? called on the main loop unless it was stopped
---@return vim.SystemObj? process, string? err
function M.spawn(cmd, track, on_exit)
  ---@type lofi.Playing
  local playing = { path = track.path, track_id = track.track_id, socket = track.socket, stopped = false }
  local opts = { stdin = false, stdout = false, stderr = true, text = true }
  local ok, process = pcall(vim.system, cmd, opts, function(result)
    vim.schedule(function()
      if playing.stopped then
        return
      end
      local was_current = M.current == playing
      if was_current then
        M.current = nil
      end
      if result.code ~= 0 or (result.signal and result.signal ~= 0) then
        local ui = require("lofi.ui")
        local what = playing.track_id and (" playing " .. ui.describe(playing.track_id)) or ""
        local said = last_words(result.stderr)
        local how = result.code ~= 0 and ("exited with code %d"):format(result.code) or ("was killed (signal %d)"):format(result.signal)
        ui.error({ code = "PLAYER_FAILED", message = ("%s %s%s%s"):format(cmd[1], how, what, said ~= "" and (": " .. said) or "") })
      end
      if was_current and on_exit then
        on_exit(playing, result.code)
      end
    end)
  end)
  if not ok then
    return nil, ("cannot start %s: %s"):format(cmd[1], process)
  end
  playing.process = process
  M.current = playing
  return process
end

---A streamed track is finished: when `process` still plays it, its file is now `path`.
---@param process vim.SystemObj
---@param path string
function M.set_path(process, path)
  if M.current and M.current.process == process then
    M.current.path = path
  end
end

---Play a WAV file, replacing what is playing; loops when configured.
---@param path string
---@param track_id string?
---@return boolean ok, string? err
function M.play(path, track_id)
  if vim.fn.filereadable(path) == 0 then
    return false, "no such track file: " .. path
  end
  local loop = config.options.player.loop
  local cmd, loops_itself = M.command(loop)
  if not cmd then
    local names = vim.tbl_map(function(p)
      return p[1]
    end, M.known)
    return false, "no audio player found: install one of " .. table.concat(names, ", ") .. " or set player.cmd"
  end
  M.stop()
  table.insert(cmd, path)
  local function again(_, code)
    if loop and not loops_itself and code == 0 then
      M.spawn(cmd, { track_id = track_id, path = path }, again) -- players without a loop flag are started again
    end
  end
  local process, err = M.spawn(cmd, { track_id = track_id, path = path }, again)
  return process ~= nil, err
end

return M
