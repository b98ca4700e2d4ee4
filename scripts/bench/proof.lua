-- wrk script: inclusion proofs of random uploads (1..SMS_AUDIT_BENCH_UPLOADS) with
-- an auditor token (SMS_AUDIT_BENCH_TOKEN); with SMS_AUDIT_BENCH_PROOF=consistency,
-- consistency proofs from a random tree size to the whole tree instead.
local uploads = tonumber(os.getenv("SMS_AUDIT_BENCH_UPLOADS"))
local consistency = os.getenv("SMS_AUDIT_BENCH_PROOF") == "consistency"
wrk.headers["X-Auth-Token"] = os.getenv("SMS_AUDIT_BENCH_TOKEN")
math.randomseed(os.time())
request = function()
  if consistency then
    return wrk.format("GET", string.format("/api/v1/checkpoints/consistency?from=%d&to=%d",
      math.random(1, uploads - 1), uploads))
  end
  return wrk.format("GET", string.format("/api/v1/uploads/%d/proof", math.random(1, uploads)))
end

local non200 = 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("BENCH rps=%.1f p50_ms=%.3f p99_ms=%.3f non200=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, non200))
end
