-- Hearing a track before it is finished: mpv plays the engine's 2 s chunks as a gapless playlist, fed over
-- its IPC socket as they arrive. Playback starts only once it can no longer catch up with generation (the
-- audio already made lasts at least as long as the generation still needs), so it never stalls; on a machine
-- faster than real time that is the first chunk.
local config = require("lofi.config")
local player = require("lofi.player")

local M = {}

---@class lofi.Stream
---@field track_id string
---@field chunks string[] chunk files not yet handed to mpv
---@field buffered_sec number audio available so far
---@field eta_sec number? generation time still needed
---@field socket string?
---@field pipe uv.uv_pipe_t?
---@field connected boolean
---@field pending string[] IPC commands waiting for the connection
---@field process vim.SystemObj?

---@type table<string, lofi.Stream>
M.streams = {}

---Whether streamed playback can be used: autoplay on and mpv is the player.
---@return boolean
function M.available()
  local cmd = player.command(false)
  return config.options.autoplay and cmd ~= nil and vim.fs.basename(cmd[1]) == "mpv"
end

local function send(stream, command)
  local line = vim.json.encode({ command = command }) .. "\n"
  if stream.connected then
    stream.pipe:write(line)
  else
    table.insert(stream.pending, line)
  end
end

local function connect(stream, attempts)
  local pipe = vim.uv.new_pipe(false)
  pipe:connect(stream.socket, function(err)
    vim.schedule(function()
      if err then
        pipe:close()
        if attempts > 0 and M.streams[stream.track_id] == stream then
          vim.defer_fn(function()
            connect(stream, attempts - 1)
          end, 50)
        end
        return
      end
      stream.pipe, stream.connected = pipe, true
      pipe:read_start(function() end) -- mpv's replies and events: not needed
      for _, line in ipairs(stream.pending) do
        pipe:write(line)
      end
      stream.pending = {}
    end)
  end)
end

local function start(stream)
  local cmd = player.command(false)
  stream.socket = vim.fn.tempname() .. ".mpv"
  vim.list_extend(cmd, { "--idle=yes", "--gapless-audio=yes", "--input-ipc-server=" .. stream.socket })
  table.insert(cmd, table.remove(stream.chunks, 1))
  player.stop()
  local process = player.spawn(cmd, { track_id = stream.track_id, socket = stream.socket })
  if not process then
    M.streams[stream.track_id] = nil
    return
  end
  stream.process = process
  connect(stream, 100)
end

local function feed(stream)
  if not stream.process then
    local waiting = stream.eta_sec == nil or stream.buffered_sec < stream.eta_sec
    if waiting then
      return
    end
    start(stream)
  end
  for _, path in ipairs(stream.chunks) do
    send(stream, { "loadfile", path, "append-play" })
  end
  stream.chunks = {}
end

---A `generation_chunk` event.
---@param data table
function M.on_chunk(data)
  if not M.available() then
    return
  end
  local stream = M.streams[data.track_id]
  if not stream then
    stream = { track_id = data.track_id, chunks = {}, buffered_sec = 0, connected = false, pending = {} }
    M.streams[data.track_id] = stream
  end
  table.insert(stream.chunks, data.path)
  stream.buffered_sec = data.start_sec + data.duration_sec
  feed(stream)
end

---A `generation_progress` event: the time still needed decides when playback may start.
---@param data table
function M.on_progress(data)
  local stream = M.streams[data.track_id]
  if stream then
    stream.eta_sec = data.eta_sec
    feed(stream)
  end
end

---A finished track: hand mpv what is left and loop the whole playlist (the chunks make up the track).
---Returns false when the track was not being streamed (so it should be played the ordinary way).
---@param data table
---@return boolean
function M.on_complete(data)
  local stream = M.streams[data.track_id]
  M.streams[data.track_id] = nil
  if not stream then
    return false
  end
  if not stream.process then
    return false -- generation finished before playback could start: play the finished file
  end
  for _, path in ipairs(stream.chunks) do
    send(stream, { "loadfile", path, "append-play" })
  end
  player.set_path(stream.process, data.path)
  if config.options.player.loop then
    send(stream, { "set_property", "loop-playlist", "inf" })
  else
    send(stream, { "set_property", "idle", "no" })
  end
  return true
end

---A failed track: stop whatever of it was playing.
---@param data table
function M.on_error(data)
  local stream = M.streams[data.track_id]
  M.streams[data.track_id] = nil
  if stream and stream.process then
    player.stop(stream.process)
  end
end

return M
