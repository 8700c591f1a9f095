-- POST the bodies of a file (one per line) in turn, and print a JSON summary when done.
--
--   wrk -t1 -c64 -d10s --latency -s post.lua http://127.0.0.1:PORT/invocations -- BODIES_FILE
--
-- Requests are formatted once in init(), so the Lua side costs next to nothing per request.
-- The summary line starts with WRK_JSON; latencies are in microseconds.

local prepared = {}
local index = 0

function init(args)
  local path = args[1]
  for line in io.lines(path) do
    if #line > 0 then
      local headers = { ["Content-Type"] = "application/json" }
      prepared[#prepared + 1] = wrk.format("POST", wrk.path, headers, line)
    end
  end
  if #prepared == 0 then
    error("no request bodies in " .. tostring(path))
  end
end

function request()
  index = index % #prepared + 1
  return prepared[index]
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.duration, summary.requests, summary.bytes, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
