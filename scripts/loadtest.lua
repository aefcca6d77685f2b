-- wrk script for scripts/loadtest.sh: every request POSTs the same real JPEG to /api/search.
-- usage: wrk ... -s loadtest.lua URL -- QUERY.jpg
local body

function init(args)
  local path = args[1] or error("pass the query image after --")
  local file = assert(io.open(path, "rb"))
  body = file:read("*all")
  file:close()
end

function request()
  return wrk.format("POST", nil, { ["Content-Type"] = "image/jpeg" }, body)
end

-- Non-2xx answers count as errors (wrk counts them in summary.errors.status).
function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT requests=%d seconds=%.1f rps=%.1f p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f max_ms=%.1f "
      .. "errors_status=%d errors_connect=%d errors_read=%d errors_write=%d errors_timeout=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect, e.read, e.write, e.timeout))
end
