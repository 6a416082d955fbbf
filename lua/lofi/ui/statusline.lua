-- The statusline component (require("lofi").statusline()): what plays and what is being generated, from the state
-- layer's view; and the redraws (and `User LofiProgress`) that follow each change.
local events = require("lofi.state.events")
local player = require("lofi.state.player")
local wording = require("lofi.ui.wording")

local M = {}

local REDRAW_EVERY_MS = 200

---How long a prompt may be on the statusline.
M.STATUSLINE_PROMPT = 24

---Where the track is and the volume, as asked: ` 0:42/2:00`, ` vol 80`.
---@param opts {position: boolean?, volume: boolean?}
---@return string
local ticking = nil

---While a statusline shows the position of a track that plays: a redraw every second (none otherwise).
local function tick()
  if ticking or not (player.current and player.current.state == "playing") then
    return
  end
  ticking = vim.uv.new_timer()
  ticking:start(1000, 1000, vim.schedule_wrap(function()
    if not (player.current and player.current.state == "playing") then
      ticking:stop()
      ticking:close()
      ticking = nil
    end
    pcall(vim.cmd, "redrawstatus!")
  end))
end

local function details(opts)
  local text = ""
  local at = opts.position and player.position()
  if at then
    tick()
  end
  if at then
    local length = player.current.duration_sec
    text = " " .. wording.clock(at) .. (length and ("/" .. wording.clock(length)) or "")
  end
  if opts.volume then
    text = text .. (" vol %d"):format(player.volume_level())
  end
  return text
end

---What plays: `▶ rainy piano`, `⏸ rainy piano`, `▶ radio live: lofi hip hop` (mode starting, live, rotation,
---waiting for disk space or error), or "" when nothing plays and the radio is off; with `opts.position` and
---`opts.volume`, where the track is and the volume (`▶ rainy piano 0:42/2:00 vol 80`).
---@param opts {position: boolean?, volume: boolean?}?
---@return string
function M.playing_line(opts)
  opts = opts or {}
  local current, radio = player.current, player.radio
  local icon = current and current.state == "paused" and "⏸" or "▶"
  if radio.active then
    local prompt = radio.prompt or (current and current.prompt) or ""
    local text = ("%s radio %s"):format(current and icon or "♪", radio.mode or "starting")
    text = prompt ~= "" and ("%s: %s"):format(text, wording.shorten(prompt, M.STATUSLINE_PROMPT)) or text
    return text .. (opts.volume and details({ volume = true }) or "")
  end
  if not current then
    return ""
  end
  local prompt = current.prompt or (events.known[current.track_id] or {}).prompt or current.track_id
  return ("%s %s%s"):format(icon, wording.shorten(prompt, M.STATUSLINE_PROMPT), details(opts))
end

---While a request is under way, its state: `♪ queued`, `♪ awaiting consent`, `♪ downloading 12%`, `♪ loading 40%`,
---`♪ 45% 0:35` (generating: percent, time left), `♪ decoding 80% 0:10` (ACE-Step), and `+N` when N more jobs
---wait; "" when nothing is.
---@return string
function M.generation_line()
  local job = events.current()
  local text
  if job and job.state == "generating" then
    local doing = job.stage == "decode" and "decoding " or ""
    text = ("♪ %s%d%%"):format(doing, job.percent or 0)
    if job.eta_sec then
      text = text .. " " .. wording.clock(job.eta_sec)
    end
  elseif job and job.state == "loading" then
    text = ("♪ loading %d%%"):format(job.percent or 0)
  elseif events.download then
    text = ("♪ downloading %d%%"):format(events.download.percent or 0)
  elseif events.awaiting_consent then
    text = "♪ awaiting consent"
  elseif job then
    text = "♪ queued"
  else
    return ""
  end
  local more = #events.jobs() - 1
  if more > 0 then
    text = ("%s +%d"):format(text, more)
  end
  return text
end

---What plays and what is being generated, together (`▶ rainy piano · ♪ 45% 0:35`); "" when neither.
---@param opts {position: boolean?, volume: boolean?}?
---@return string
function M.statusline(opts)
  local playing, generating = M.playing_line(opts), M.generation_line()
  if playing ~= "" and generating ~= "" then
    return playing .. " · " .. generating
  end
  return playing .. generating
end

local last_redraw, redraw_pending = 0, false

local function redraw()
  last_redraw = vim.uv.now()
  pcall(vim.cmd, "redrawstatus!") -- every window's (the queue window has none of its own)
end

---Let statuslines and other plugins know the state changed (`User LofiProgress`); redraws every statusline at most
---every 200 ms, and always once more after the last change (or at once with `now`: a job ended or failed).
---@param now boolean?
function M.progress_changed(now)
  pcall(vim.api.nvim_exec_autocmds, "User", { pattern = "LofiProgress", modeline = false })
  local since = vim.uv.now() - last_redraw
  if now or since >= REDRAW_EVERY_MS then
    redraw()
  elseif not redraw_pending then
    redraw_pending = true
    vim.defer_fn(function()
      redraw_pending = false
      redraw()
    end, REDRAW_EVERY_MS - since)
  end
end

return M
