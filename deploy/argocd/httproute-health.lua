-- Argo CD health check for gateway.networking.k8s.io/HTTPRoute (also GRPCRoute) served by
-- lockstep (Lua 5.1, as Argo CD's gopher-lua runs it). Only the parent entries written by
-- lockstep's controller count; a condition counts only when its observedGeneration equals
-- metadata.generation (right after a spec change the old one is stale).
--   Healthy      every lockstep parent has lockstep.dev/Ready=True for this generation: every
--                live replica of that parent's fleet serves it
--   Degraded     a lockstep parent says Accepted=False or ResolvedRefs=False for this generation
--   Progressing  anything else: no lockstep parent yet, stale conditions, Ready not yet True
local hs = {}
local generation = obj.metadata and obj.metadata.generation
local parents = {}
if obj.status ~= nil and obj.status.parents ~= nil then
  for _, p in ipairs(obj.status.parents) do
    if p.controllerName == "lockstep.dev/gateway-controller" then
      table.insert(parents, p)
    end
  end
end
if #parents == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for lockstep to attach the route to a Gateway"
  return hs
end

local function current(parent, type)
  if parent.conditions == nil then
    return nil
  end
  for _, c in ipairs(parent.conditions) do
    if c.type == type and c.observedGeneration == generation then
      return c
    end
  end
  return nil
end

local function name(parent)
  local ref = parent.parentRef or {}
  local n = tostring(ref.name)
  if ref.sectionName ~= nil then
    n = n .. "/" .. tostring(ref.sectionName)
  end
  return n
end

local waiting = nil
for _, p in ipairs(parents) do
  for _, type in ipairs({"Accepted", "ResolvedRefs"}) do
    local c = current(p, type)
    if c ~= nil and c.status == "False" then
      hs.status = "Degraded"
      hs.message = name(p) .. ": " .. type .. "=False " .. tostring(c.reason) .. ": " .. tostring(c.message or "")
      return hs
    end
  end
  local ready = current(p, "lockstep.dev/Ready")
  if waiting == nil and (ready == nil or ready.status ~= "True") then
    if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
      waiting = name(p) .. ": " .. ready.message
    else
      waiting = name(p) .. ": waiting for every replica to serve generation " .. tostring(generation)
    end
  end
end
if waiting ~= nil then
  hs.status = "Progressing"
  hs.message = waiting
  return hs
end
hs.status = "Healthy"
hs.message = "Every replica of every parent serves generation " .. tostring(generation)
return hs
