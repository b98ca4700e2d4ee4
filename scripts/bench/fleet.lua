-- wrk script: the fleet pages at a random moment each request, so that no state
-- is reused from an earlier request. Env: SMS_AUDIT_BENCH_COOKIE, and
-- SMS_AUDIT_BENCH_FIRST / _LAST (seconds since the epoch) and
-- SMS_AUDIT_BENCH_FLEET = dashboard (/?as_of=T), changes (/changes?from=T1&to=T2),
-- api-tasks (/api/v1/tasks?limit=100&as_of=T) or api-changes (/api/v1/changes?...).
wrk.headers["Cookie"] = os.getenv("SMS_AUDIT_BENCH_COOKIE")
local first = tonumber(os.getenv("SMS_AUDIT_BENCH_FIRST"))
local last = tonumber(os.getenv("SMS_AUDIT_BENCH_LAST"))
local kind = os.getenv("SMS_AUDIT_BENCH_FLEET")

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

request = function()
  local t = first + math.random() * (last - first)
  local path
  local between = "from=" .. iso(t) .. "&to=" .. iso(t + math.random() * (last - t))
  if kind == "changes" then
    path = "/changes?" .. between
  elseif kind == "api-changes" then
    path = "/api/v1/changes?" .. between
  elseif kind == "api-tasks" then
    path = "/api/v1/tasks?limit=100&as_of=" .. iso(t)
  else
    path = "/?as_of=" .. iso(t)
  end
  return wrk.format("GET", path)
end

done = function(summary, latency, requests)
  io.write(string.format("BENCH requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
