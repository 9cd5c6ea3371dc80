-- Argo CD health check for weir.dev/MultimodalJob.
-- Install: add under resource.customizations.health.weir.dev_MultimodalJob in argocd-cm
-- (see README, "On Kubernetes"). Tested by operator/tests/argocd_health.rs.
local hs = {}
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Weir operator to pick up the job"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Weir operator to observe generation " .. tostring(generation)
  return hs
end
local phase = obj.status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" then
  hs.status = "Degraded"
elseif phase == "Suspended" then
  hs.status = "Suspended"
else
  hs.status = "Progressing"
end
local message = obj.status.message
if message == nil or message == "" then
  message = phase
end
local progress = obj.status.progress
if phase == "Running" and progress ~= nil and progress.percent ~= nil then
  message = progress.percent .. " done: " .. message
end
hs.message = message
return hs
