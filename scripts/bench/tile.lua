-- wrk script: GET a random full tile of level 0 (C2SP tlog-tiles path) with an
-- auditor token (env SMS_AUDIT_BENCH_TOKEN); SMS_AUDIT_BENCH_TILES full tiles exist.
wrk.headers["X-Auth-Token"] = os.getenv("SMS_AUDIT_BENCH_TOKEN")
local tiles = tonumber(os.getenv("SMS_AUDIT_BENCH_TILES"))
math.randomseed(os.time())

local function tile_index(n)
  local groups = { string.format("%03d", n % 1000) }
  n = math.floor(n / 1000)
  while n > 0 do
    table.insert(groups, 1, string.format("x%03d", n % 1000))
    n = math.floor(n / 1000)
  end
  return table.concat(groups, "/")
end

request = function()
  return wrk.format("GET", "/tile/0/" .. tile_index(math.random(0, tiles - 1)))
end

local non200 = 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("BENCH requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
