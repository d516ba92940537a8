-- POSTs a different pre-made body on every request: thread k walks $BODIES.k (made by
-- sign-bodies.mjs before the timed window), one item a line: "<token>\t<JSON body>[\t…]".
-- A non-empty token goes in "Authorization: Bearer". Items are never reused silently: when a
-- thread runs out it starts over and counts the wrap in "wrapped" (fleetca refuses a replayed
-- one-time token, so the job fails; cfssl has no such rule and may cycle). Prints one JSON line
-- at the end, like wrk-post.lua, plus p50 and the wrap count.
-- With $TARGETS ("127.0.0.1:PORT,127.0.0.1:PORT", the API of each replica on one database),
-- thread k connects to target k mod n instead of the URL's address: the load is spread over the
-- replicas by connection, as a load balancer in front of them would (the URL names the first).
local threads = {}
local next_id = 0
local targets = nil

function setup(thread)
  local t = os.getenv("TARGETS")
  if t and #t > 0 and not targets then
    targets = {}
    for hp in t:gmatch("[^,]+") do
      local host, port = hp:match("^(.*):(%d+)$")
      targets[#targets + 1] = wrk.lookup(host, port)[1]
    end
  end
  if targets then thread.addr = targets[(next_id % #targets) + 1] end
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  tokens, bodies = {}, {}
  for line in io.lines(os.getenv("BODIES") .. "." .. id) do
    local a = line:find("\t", 1, true)
    local b = line:find("\t", a + 1, true)
    tokens[#tokens + 1] = line:sub(1, a - 1)
    bodies[#bodies + 1] = line:sub(a + 1, (b or 0) - 1)
  end
  n, pos, wrapped = #bodies, 0, 0
  assert(n > 0, "no bodies in " .. os.getenv("BODIES") .. "." .. id)
end

function request()
  pos = pos + 1
  if pos > n then
    pos = 1
    wrapped = wrapped + 1
  end
  local headers = { ["Content-Type"] = "application/json" }
  if #tokens[pos] > 0 then headers["Authorization"] = "Bearer " .. tokens[pos] end
  return wrk.format("POST", nil, headers, bodies[pos])
end

function done(summary, latency, requests)
  local e = summary.errors
  local wraps = 0
  for _, t in ipairs(threads) do wraps = wraps + (t:get("wrapped") or 0) end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"wrapped":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, wraps))
end
