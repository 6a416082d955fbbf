-- What the :Lofi* commands share: how they report errors (the commands are where errors are notified; the Lua API
-- returns them), asking for a prompt, completion, and naming a track or a job by its id or its prompt.
local lofi = require("lofi")
local events = require("lofi.state.events")
local messages = require("lofi.ui.messages")
local wording = require("lofi.ui.wording")

local M = {}

---Notify an error from a request (logged by the remote plugin unless it never got there).
---@param err lofi.Error
function M.report(err)
  messages.report(err)
end

---Notify an error found here (it goes to the plugin log too).
---@param message string
---@param code string?
function M.invalid(message, code)
  messages.error({ code = code or "INVALID_PARAMS", message = message })
end

---Ask for a prompt; ``run(prompt)`` when one (not blank) is given.
---@param label string
---@param default string?
---@param run fun(prompt: string)
function M.ask_prompt(label, default, run)
  vim.ui.input({ prompt = label, default = default }, function(prompt)
    if prompt and vim.trim(prompt) ~= "" then
      run(prompt)
    end
  end)
end

---Completion items that start with what is typed.
---@param items string[]
---@param lead string
---@return string[]
function M.starting_with(items, lead)
  return vim.tbl_filter(function(item)
    return vim.startswith(item, lead)
  end, items)
end

-- ---- tracks by what they are ----------------------------------------------------------------------------------

---Completion items `<id> "prompt" (30s, backend)` for what was typed: an id's start or a piece of the prompt.
---@param items table[] tracks or jobs
---@param arg_lead string
---@return string[]
function M.complete_items(items, arg_lead)
  local lead = arg_lead:lower()
  local out = {}
  for _, item in ipairs(items) do
    local id = item.track_id
    if id then
      events.remember(id, item)
      local prompt = (item.prompt or ""):lower()
      if lead == "" or vim.startswith(id, arg_lead) or prompt:find(lead, 1, true) then
        table.insert(out, wording.describe(id, item))
      end
    end
  end
  return out
end

---The track id an argument names: the id (what completion inserts starts with it), or a prompt (exact, then part).
---@param arg string
---@param items table[] tracks or jobs
---@return string? id
function M.resolve(arg, items)
  local first = arg:match("^(%S+)")
  for _, item in ipairs(items) do
    if item.track_id == first then
      return first
    end
  end
  local lower = arg:lower()
  for _, exact in ipairs({ true, false }) do
    for _, item in ipairs(items) do
      local prompt = (item.prompt or ""):lower()
      if item.track_id and ((exact and prompt == lower) or (not exact and prompt:find(lower, 1, true))) then
        return item.track_id
      end
    end
  end
  return nil
end

---The pending jobs, then the running one.
---@return table[] jobs, lofi.Error? err
function M.jobs()
  local queue, err = lofi.queue()
  if err then
    return {}, err
  end
  return vim.list_extend(vim.list_extend({}, queue.pending or {}), { queue.running }), nil
end

---The command's words, a double-quoted stretch kept as one: `key="C minor"` is one word, `key=C minor` two.
---@param line string
---@return string[]
function M.split_words(line)
  local words, current, quoted = {}, {}, false
  for char in line:gmatch(".") do
    if char == '"' then
      quoted = not quoted
    elseif char:match("%s") and not quoted then
      if #current > 0 then
        table.insert(words, table.concat(current))
        current = {}
      end
    else
      table.insert(current, char)
    end
  end
  if #current > 0 then
    table.insert(words, table.concat(current))
  end
  return words
end

return M
