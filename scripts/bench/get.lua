-- wrk script: GET a page with the session cookie (env SMS_AUDIT_BENCH_COOKIE).
wrk.headers["Cookie"] = os.getenv("SMS_AUDIT_BENCH_COOKIE")

done = function(summary, latency, requests)
  io.write(string.format("BENCH requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
