-- The player's commands: :LofiPlay, :LofiPause, :LofiResume, :LofiToggle, :LofiSkip, :LofiStop, :LofiVolume,
-- :LofiSeek, :LofiShuffle, :LofiNow. They read the command's syntax ("+10", "1:20") and say what the service did;
-- the rules (ranges, what a stop does to the radio, "nothing is playing") are the service's.
local common = require("lofi.commands.common")
local lofi = require("lofi")
local messages = require("lofi.ui.messages")
local events = require("lofi.state.events")
local player = require("lofi.state.player")
local wording = require("lofi.ui.wording")

local M = {}

---What a reply is about, for a message: its prompt (a radio segment: "the radio"), else its id.
---@param reply table
---@return string
local function about(reply)
  if reply.radio then
    return "the radio" .. (reply.prompt and reply.prompt ~= vim.NIL and (": " .. wording.shorten(reply.prompt, 48)) or "")
  end
  local info = {}
  for _, key in ipairs({ "prompt", "duration_sec", "backend" }) do
    if reply[key] ~= nil and reply[key] ~= vim.NIL then
      info[key] = reply[key]
    end
  end
  return reply.track_id and wording.describe(reply.track_id, info) or "the track"
end

---An error from the service, said: "nothing is playing" is a note, not an error.
local function report(err)
  if err.code == "NOT_PLAYING" then
    messages.notify("lofi: nothing is playing")
  else
    common.report(err)
  end
end

function M.complete_tracks(arg_lead)
  return common.complete_items((lofi.tracks()), arg_lead)
end

function M.play(cmd)
  local id = nil
  if cmd.args ~= "" then
    local tracks, err = lofi.tracks()
    if err then
      common.report(err)
      return
    end
    id = common.resolve(cmd.args, tracks)
    if not id then
      messages.notify(("lofi: no cached track %s (:LofiPlay <Tab> lists them)"):format(cmd.args), vim.log.levels.WARN)
      return
    end
  end
  local result, err = player.play(id)
  if not result then
    report(err)
    return
  end
  messages.notify("lofi: playing " .. about(result))
end

local SAID = { pause = "paused", resume = "playing", skip = "skipped" }

---A player control; says what it acted on (or that nothing plays).
local function control(name)
  return function()
    local result, err = lofi[name]()
    if not result then
      report(err)
      return
    end
    messages.notify(("lofi: %s %s"):format(SAID[result.sent] or result.sent, about(result)))
  end
end

M.pause = control("pause")
M.resume = control("resume")
M.toggle = control("toggle")
M.skip = control("skip")

---What the volume is (after a change: "(the lowest)" when it stopped at 0, "(the highest)" at 100).
local function say_volume(result)
  local edge = result.limited and (result.volume == 0 and " (the lowest)" or " (the highest)") or ""
  messages.notify(("lofi: volume %d%s"):format(result.volume, edge))
end

---:LofiVolume N (0–100), +N / -N (from the current volume); without an argument, says the volume.
function M.volume(cmd)
  local arg = vim.trim(cmd.args or "")
  if arg == "" then
    messages.notify(("lofi: volume %d"):format(player.volume_level()))
    return
  end
  local sign, number = arg:match("^([+-]?)(%d+%.?%d*)$")
  if not number then
    common.invalid(("the volume is a number from 0 to 100, or +N / -N, not %q"):format(arg))
    return
  end
  local value = tonumber(number)
  local result, err = lofi.volume(sign == "" and value or { change = sign == "-" and -value or value })
  if not result then
    report(err)
    return
  end
  say_volume(result)
end

function M.complete_volume(arg_lead)
  return vim.tbl_filter(function(item)
    return vim.startswith(item, arg_lead)
  end, { "0", "25", "50", "75", "100", "+10", "-10" })
end

---Seconds from "80", "1:20" or "1:02:03" (nil when it is none of these).
---@param text string
---@return number?
local function seconds(text)
  local parts = vim.split(text, ":", { plain = true })
  if #parts > 3 then
    return nil
  end
  local total = 0
  for i, part in ipairs(parts) do
    local n = tonumber(part)
    if not n or (i > 1 and not part:match("^%d%d?%.?%d*$")) then
      return nil
    end
    total = total * 60 + n
  end
  return total
end

---:LofiSeek 1:20 (from the start of the track), +30 / -10 (from where it is).
function M.seek(cmd)
  local arg = vim.trim(cmd.args or "")
  local sign, rest = arg:match("^([+-]?)(.+)$")
  local value = rest and seconds(rest)
  if not value then
    common.invalid(("seek to a time like 1:20 or 80, or by +30 / -10 seconds, not %q"):format(arg))
    return
  end
  local result, err = lofi.seek(sign == "" and value or (sign == "-" and -value or value), sign ~= "")
  if not result then
    report(err)
    return
  end
  messages.notify(("lofi: %s of %s, %s"):format(wording.clock(result.position_sec), wording.clock(result.duration_sec or 0), about(result)))
end

function M.complete_seek(arg_lead)
  return vim.tbl_filter(function(item)
    return vim.startswith(item, arg_lead)
  end, { "+10", "-10", "+30", "-30", "0:00" })
end

---:LofiShuffle (turn it over), :LofiShuffle on / off.
function M.shuffle(cmd)
  local arg = vim.trim(cmd.args or "")
  local enabled = ({ on = true, off = false })[arg]
  if arg ~= "" and enabled == nil then
    common.invalid(("shuffle takes on or off (nothing: turn it over), not %q"):format(arg))
    return
  end
  local result, err = lofi.shuffle(enabled)
  if not result then
    report(err)
    return
  end
  messages.notify("lofi: shuffle " .. (result.shuffle and "on" or "off"))
end

function M.complete_shuffle(arg_lead)
  return vim.tbl_filter(function(item)
    return vim.startswith(item, arg_lead)
  end, { "on", "off" })
end

---:LofiNow: what plays, where it is, the volume.
function M.now()
  local now, err = lofi.now_playing()
  if not now then
    report(err)
    return
  end
  if now.state == "stopped" then
    messages.notify("lofi: nothing is playing")
    return
  end
  local icon = now.state == "paused" and "⏸" or "▶"
  local at = now.duration_sec and now.duration_sec ~= vim.NIL
      and (" %s / %s"):format(wording.clock(now.position_sec or 0), wording.clock(now.duration_sec))
    or ""
  local head, tail = ("lofi: %s "):format(icon), ("%s, volume %d"):format(at, now.volume or player.volume_level())
  -- one line the message area holds (no hit-enter prompt): where and how loud stay, the prompt gives way
  local width = messages.room() - vim.fn.strdisplaywidth(head) - vim.fn.strdisplaywidth(tail)
  local prompt = now.prompt ~= vim.NIL and now.prompt or (now.track_id and (events.known[now.track_id] or {}).prompt)
  local what = (now.radio or not prompt) and about(now) or ("%q"):format(wording.shorten(prompt, math.max(width - 2, 8)))
  messages.notify(head .. what .. tail)
end

function M.stop()
  local stopped, err = lofi.stop()
  if err then
    report(err)
  elseif not stopped then
    messages.notify("lofi: nothing is playing")
  elseif stopped.radio then
    messages.notify("lofi: stopped the radio" .. (stopped.prompt and (" %q"):format(stopped.prompt) or ""))
  else
    messages.notify("lofi: stopped " .. about(stopped))
  end
end

return M
