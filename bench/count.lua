-- Counts the requests wrk writes (not only those answered in time), so the
-- audit ratio compares rows with requests actually sent. Optional env:
-- BENCH_TOKEN sets the bearer token.
local threads = {}
local token = os.getenv("BENCH_TOKEN")

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  sent = 0
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  sent = sent + 1
  return wrk.format()
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("sent")
  end
  io.write(string.format("SENT %d\n", total))
  io.write(string.format("LAT %d %d\n", latency:percentile(50), latency:percentile(99)))
end
