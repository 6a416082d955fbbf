-- The track picker of :LofiTracks: a cached track, then what to do with it (vim.ui.select, so a picker plugin takes
-- over). What each action does is the command's (lua/lofi/commands/library.lua).
local wording = require("lofi.ui.wording")

local M = {}

---"just now", "5 min ago", "3 h ago", "2 days ago".
---@param at number? Unix seconds
---@return string
function M.age(at)
  if not at then
    return "?"
  end
  local seconds = math.max(0, os.time() - at)
  if seconds < 60 then
    return "just now"
  elseif seconds < 3600 then
    return ("%d min ago"):format(math.floor(seconds / 60))
  elseif seconds < 86400 then
    return ("%d h ago"):format(math.floor(seconds / 3600))
  end
  return ("%d days ago"):format(math.floor(seconds / 86400))
end

---Tempo, key and time signature when the track was asked for with them: "  80 bpm  C minor  3/4".
---@param track table
---@return string
local function music(track)
  local parts = {}
  if track.bpm ~= nil and track.bpm ~= vim.NIL then
    table.insert(parts, ("%g bpm"):format(track.bpm))
  end
  if track.key ~= nil and track.key ~= vim.NIL then
    table.insert(parts, track.key)
  end
  if track.time_signature ~= nil and track.time_signature ~= vim.NIL then
    table.insert(parts, ("%d/%d"):format(track.time_signature, track.time_signature == 6 and 8 or 4))
  end
  return #parts > 0 and ("  " .. table.concat(parts, "  ")) or ""
end

---One picker line: prompt, duration, backend, tempo/key/time signature when asked for, seed, age and the id's
---start (two takes of a prompt differ by seed).
---@param track table
---@return string
function M.track_line(track)
  return ("%s  %ss  %s%s  seed %s  %s  %s"):format(
    track.prompt or track.track_id,
    track.duration_sec and ("%g"):format(track.duration_sec) or "?",
    track.backend or "?",
    music(track),
    track.seed ~= nil and tostring(track.seed) or "?",
    M.age(track.created_at),
    (track.track_id or ""):sub(1, 8)
  )
end

---Ask before something that cannot be undone: `on_yes()` runs only when the user picks `yes`.
---@param question string
---@param yes string the answer that goes ahead ("delete")
---@param on_yes fun()
function M.confirm(question, yes, on_yes)
  vim.ui.select({ yes, "cancel" }, { prompt = question, kind = "lofi_confirm" }, function(answer)
    if answer == yes then
      vim.schedule(function()
        pcall(vim.cmd, "redraw")
        on_yes()
      end)
    end
  end)
end

---What the picker can do with a track, in the order offered.
M.TRACK_ACTIONS = { "play", "add to playlist", "delete", "regenerate with a new seed", "continue it" }

---Pick one of `tracks`, then one of TRACK_ACTIONS for it; `on_action(action, track)` runs once both are chosen.
---@param tracks table[]
---@param on_action fun(action: string, track: table)
function M.pick_track(tracks, on_action)
  vim.ui.select(tracks, { prompt = "lofi tracks", format_item = M.track_line, kind = "lofi_track" }, function(track)
    if not track then
      return
    end
    vim.ui.select(M.TRACK_ACTIONS, { prompt = ("lofi: %s"):format(wording.shorten(track.prompt or track.track_id, 40)), kind = "lofi_track_action" }, function(action)
      if action then  -- as after the consent question: redraw over the list first, or the result raises hit-enter
        vim.schedule(function()
          pcall(vim.cmd, "redraw")
          on_action(action, track)
        end)
      end
    end)
  end)
end

return M
