-- POSTs one fixed OCSP request body (file named by $BODY) on every request, and at the end
-- prints one JSON line the harness parses (wrk's own text output is for humans).
local f = assert(io.open(os.getenv("BODY"), "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/ocsp-request"

-- openssl's single-process `ocsp -port` responder spins forever on a connection that closes
-- without a request (openssl issue #23934), which is exactly wrk's address probe in
-- wrk.resolve. SKIP_PROBE=1 keeps the looked-up addresses without that probe connection.
if os.getenv("SKIP_PROBE") == "1" then
  function wrk.resolve(host, service)
    wrk.addrs = wrk.lookup(host, service)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
