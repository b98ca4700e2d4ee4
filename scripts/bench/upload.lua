-- wrk script: POST the example upload with an agent token (env SMS_AUDIT_BENCH_TOKEN).
local f = assert(io.open(os.getenv("SMS_AUDIT_BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Auth-Token"] = os.getenv("SMS_AUDIT_BENCH_TOKEN")
wrk.path = "/v3/tasks/137224b7-8d7c-4919-b33e-ed1597780000/consistency-result"

-- SMS_AUDIT_BENCH_TASKS=N spreads the uploads over N tasks, in turn.
local tasks = tonumber(os.getenv("SMS_AUDIT_BENCH_TASKS") or "1")
if tasks > 1 then
  local n = 0
  request = function()
    n = n + 1
    local path = string.format("/v3/tasks/137224b7-8d7c-4919-b33e-ed15977%05d/consistency-result", n % tasks)
    return wrk.format(nil, path)
  end
end

local non200 = 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("BENCH requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
