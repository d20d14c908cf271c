-- wrk script of part 6 (bench/serving.py): counts the answers of every
-- wall-clock second and every status, and prints them with the median and
-- 99th percentile latency (microseconds) as one line: RESULT {json}.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  per_second = {}
  statuses = {}
end

function response(status, headers, body)
  local now = os.time()
  per_second[now] = (per_second[now] or 0) + 1
  statuses[status] = (statuses[status] or 0) + 1
end

-- Each wrk thread has its own Lua state: add their tables up.
local function merged(name)
  local total = {}
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get(name)) do
      total[key] = (total[key] or 0) + n
    end
  end
  local parts = {}
  for key, n in pairs(total) do
    table.insert(parts, string.format('"%d": %d', key, n))
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"p50": %d, "p99": %d, "requests": %d, "duration": %d, "socket_errors": %d, '
      .. '"statuses": %s, "per_second": %s}\n',
    latency:percentile(50), latency:percentile(99), summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, merged("statuses"), merged("per_second")))
end
