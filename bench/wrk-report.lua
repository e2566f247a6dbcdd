-- wrk script for bench/lib.mjs: takes the Authorization header from the environment (so the key is not in wrk's
-- argv, which `ps` shows) and prints one machine-readable line when the run ends. No response() callback: calling
-- into Lua for every answer would make wrk itself the bottleneck; lib.mjs checks answers by status and size instead.
local auth = os.getenv("BENCH_AUTHORIZATION")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

-- BENCH_PATHS: a file with one request path per line; each request then goes to one of them at random (requests
-- built once per thread, so the per-request work in Lua is a table lookup).
local pathsFile = os.getenv("BENCH_PATHS")
if pathsFile and pathsFile ~= "" then
  local reqs = {}
  function init(args)
    for line in io.lines(pathsFile) do
      reqs[#reqs + 1] = wrk.format(nil, line)
    end
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  end
  function request()
    return reqs[math.random(#reqs)]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
