-- wrk script of bench/run: POST a client_credentials token request, form-encoded.
--
--   BENCH_BODY="grant_type=client_credentials&client_id=...&client_secret=..." \
--     wrk -t2 -c16 -d20s --latency -s bench/token.lua http://127.0.0.1:8080/api/v1/token
--
-- The body comes from the environment (URL-encoded by the caller) so that no credential is
-- written to disk. done() prints one machine-readable line that bench/run parses:
--   BENCH requests=<n> duration_us=<n> p50_us=<n> p99_us=<n> status_errors=<n> connect=<n> read=<n> write=<n> timeout=<n>
-- (status_errors counts responses with a status >= 400: wrk's "Non-2xx or 3xx responses").

-- BENCH_METHOD=GET sends plain GETs instead (bench/run did), with no body.

-- BENCH_AUTH="Bearer ..." adds an Authorization header; BENCH_CONTENT_TYPE overrides the body's
-- content type (bench/run federation posts JSON).

if os.getenv("BENCH_AUTH") ~= nil and os.getenv("BENCH_AUTH") ~= "" then
  wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
end

if os.getenv("BENCH_METHOD") == "GET" then
  wrk.method = "GET"
  wrk.headers["Accept"] = "application/did+json"
else
  local body = os.getenv("BENCH_BODY")
  if body == nil or body == "" then
    io.stderr:write("token.lua: BENCH_BODY is not set (the form body of the token request)\n")
    os.exit(2)
  end
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/x-www-form-urlencoded"
  wrk.headers["Accept"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
