-- The library's commands: :LofiTracks (the picker, then what to do with the track) and :LofiSave.
local common = require("lofi.commands.common")
local lofi = require("lofi")
local messages = require("lofi.ui.messages")
local pickers = require("lofi.ui.pickers")
local player = require("lofi.state.player")
local wording = require("lofi.ui.wording")

local M = {}

---`opts` with the track's tempo, key and time signature, when it was asked for with them.
local function with_music(track, opts)
  for _, name in ipairs({ "bpm", "key", "time_signature" }) do
    if track[name] ~= vim.NIL then
      opts[name] = track[name]
    end
  end
  return opts
end

---Do `action` with `track` (one of the picker's TRACK_ACTIONS).
---@param action string
---@param track table
function M.track_action(action, track)
  local what = wording.describe(track.track_id, track)
  if action == "play" then
    local ok, err = lofi.play(track)
    if not ok then
      common.report(err)
    else
      messages.notify("lofi: playing " .. what)
    end
  elseif action == "add to playlist" and not player.current then
    M.track_action("play", track) -- nothing plays: the playlist starts with it
  elseif action == "add to playlist" then
    local _, err = lofi.playlist.add(track)
    if err then
      common.report(err)
    else
      messages.notify("lofi: added to the playlist " .. what)
    end
  elseif action == "delete" then
    pickers.confirm(("Delete %s? It cannot be undone"):format(what), "delete", function()
      local _, err = lofi.delete(track)
      if err then
        common.report(err)
      else
        messages.notify("lofi: deleted " .. what)
      end
    end)
  elseif action == "regenerate with a new seed" then
    local again = with_music(track, { prompt = track.prompt, duration_sec = track.duration_sec, backend = track.backend })
    local _, err = lofi.generate(again) -- the same music, another take
    if err then
      common.report(err)
    end
  elseif action == "continue it" then
    local _, err = lofi.generate(with_music(track, { prompt = track.prompt, backend = "musicgen", continue_from = track.track_id }))
    if err then
      common.report(err)
    end
  end
end

---:LofiTracks: pick a cached track (vim.ui.select, so a picker plugin takes over), then what to do with it.
function M.tracks()
  local tracks, err = lofi.tracks()
  if err then
    common.report(err)
    return
  end
  if #tracks == 0 then
    messages.notify("lofi: no cached track yet (:LofiGenerate makes one)")
    return
  end
  pickers.pick_track(tracks, function(action, track)
    M.track_action(action, track)
  end)
end

---:LofiSave[!] [++p] path [format]: export the track playing (else the most recently played) as wav, flac, ogg or
---mp3 (default: from the extension); ! overwrites, ++p makes the missing folders (as :write ++p does).
function M.save(cmd)
  local args = vim.deepcopy(cmd.fargs)
  local make_dirs = args[1] == "++p"
  if make_dirs then
    table.remove(args, 1)
  end
  local path, format = args[1], args[2]
  if not path or #args > 2 then
    common.invalid(":LofiSave needs a file name, and a format if you like: :LofiSave [++p] ~/music/rain.flac [wav|flac|ogg|mp3]")
    return
  end
  local tracks, err = lofi.tracks()
  if err then
    common.report(err)
    return
  end
  local playing = player.current
  local track = nil
  for _, t in ipairs(tracks) do
    if playing and t.track_id == playing.track_id then
      track = t
    end
  end
  if not track and playing and playing.radio then
    common.invalid("the radio's stream is not a track of the library: :LofiSave saves a track (play one, or pick it in :LofiTracks)")
    return
  end
  track = track or tracks[1]
  if not track then
    messages.notify("lofi: no cached track to save yet", vim.log.levels.WARN)
    return
  end
  local result, save_err = lofi.save(track, path, format, { overwrite = cmd.bang, make_dirs = make_dirs })
  if save_err then
    if save_err.code == "WRITE_FAILED" then  -- the service says how over RPC; here it is the bang and ++p
      save_err.message = save_err.message
        :gsub("pass overwrite: true to replace it", "use :LofiSave! to replace it")
        :gsub("pass make_dirs: true to create it", "use :LofiSave ++p to create it")
    end
    common.report(save_err)
    return
  end
  messages.notify(("lofi: saved %s to %s"):format(wording.describe(track.track_id, track), result.path))
end

function M.complete_save(arg_lead, cmd_line)
  local args = vim.split(cmd_line, "%s+", { trimempty = false })
  if args[2] == "++p" then
    table.remove(args, 2)
  end
  if #args <= 2 then
    return vim.fn.getcompletion(arg_lead, "file")
  end
  return vim.tbl_filter(function(item)
    return vim.startswith(item, arg_lead)
  end, { "wav", "flac", "ogg", "mp3" })
end

return M
