-- wrk script: a proxied SMS call. PROXY_METHOD GET or PUT (with a progress
-- report as body), PROXY_PATH, and an agent token in SMS_AUDIT_BENCH_TOKEN (the
-- stand-in answers whatever comes, so the direct runs send the same request).
wrk.method = os.getenv("PROXY_METHOD") or "GET"
wrk.path = os.getenv("PROXY_PATH") or "/v3/config"
wrk.headers["X-Auth-Token"] = os.getenv("SMS_AUDIT_BENCH_TOKEN")
wrk.headers["X-Project-Id"] = "0123456789abcdef0123456789abcdef"
if wrk.method == "PUT" then
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"subtask_name":"SYNC_DATA","progress":42,"replicatesize":1073741824,"totalsize":4294967296,"process_trace":"copying /root/data","migrate_speed":104.8}'
end

local non200 = 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("BENCH rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
