-- Argo CD health check for lockstep.dev/RouterConfig (Lua 5.1, as Argo CD's gopher-lua runs it).
--   Healthy      Ready=True, computed for the current metadata.generation
--   Degraded     Accepted=False or Stalled=True, computed for the current generation
--   Progressing  anything else: no status yet, conditions of an older generation, Ready=False
-- A condition counts only when its observedGeneration (or, lacking one, status.observedGeneration)
-- equals metadata.generation: right after a spec change the old Ready=True is stale.
local hs = {}
local generation = obj.metadata and obj.metadata.generation
local status = obj.status

local function current(condition)
  local observed = condition.observedGeneration
  if observed == nil and status ~= nil then
    observed = status.observedGeneration
  end
  return generation ~= nil and observed ~= nil and observed == generation
end

local function describe(condition)
  local text = condition.type .. "=" .. tostring(condition.status)
  if condition.reason ~= nil and condition.reason ~= "" then
    text = text .. " (" .. condition.reason .. ")"
  end
  if condition.message ~= nil and condition.message ~= "" then
    text = text .. ": " .. condition.message
  end
  return text
end

local byType = {}
local anyStale = false
if status ~= nil and status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type ~= nil then
      if current(condition) then
        byType[condition.type] = condition
      else
        anyStale = true
      end
    end
  end
end

local accepted = byType["Accepted"]
local stalled = byType["Stalled"]
local ready = byType["Ready"]

if accepted ~= nil and accepted.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(accepted)
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
elseif status == nil or status.conditions == nil then
  hs.message = "Waiting for the lockstep operator to report status"
elseif anyStale then
  hs.message = "Waiting for the lockstep operator to observe generation " .. tostring(generation)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
