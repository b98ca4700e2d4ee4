-- wrk script: GET full tiles of level 0 (C2SP tlog-tiles paths) with an auditor
-- token (env SMS_AUDIT_BENCH_TOKEN); SMS_AUDIT_BENCH_TILES full tiles exist.
-- SMS_AUDIT_BENCH_TILE_MODE:
--   random (default): any tile each request, repeats allowed (a small ledger's
--     tiles are soon all cached, a large one's seldom: not comparable);
--   first: each tile once, in a scattered order, so that every read is a first
--     read at any size (the thread stops when every tile was answered; the few
--     requests still in flight then ask the first tiles again);
--   cached: the same 64 tiles over and over, read from the cache after the first.
wrk.headers["X-Auth-Token"] = os.getenv("SMS_AUDIT_BENCH_TOKEN")
local tiles = tonumber(os.getenv("SMS_AUDIT_BENCH_TILES"))
local mode = os.getenv("SMS_AUDIT_BENCH_TILE_MODE") or "random"
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

local function gcd(a, b)
  while b ~= 0 do a, b = b, a % b end
  return a
end

-- "first": tiles start, start + stride, ... (mod tiles), a stride coprime with
-- the count, so that no tile comes twice before all have come once.
local asked, start, stride = 0, math.random(0, tiles - 1), 7919
while gcd(stride, tiles) ~= 1 do stride = stride + 2 end

request = function()
  local n
  if mode == "first" then
    n = (start + asked * stride) % tiles
  elseif mode == "cached" then
    n = math.random(0, math.min(tiles, 64) - 1)
  else
    n = math.random(0, tiles - 1)
  end
  asked = asked + 1
  return wrk.format("GET", "/tile/0/" .. tile_index(n))
end

local non200, answered = 0, 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
  answered = answered + 1
  if mode == "first" and answered >= tiles then wrk.thread:stop() end
end

done = function(summary, latency, requests)
  io.write(string.format("BENCH requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
