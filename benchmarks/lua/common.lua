-- Shared by the wrk scripts of benchmarks/compare.py: random keys, and a done()
-- that prints one JSON line (prefixed "COMPARE_JSON ") with the figures compare.py reads.
-- The keyspace and key prefix come from the environment (KEYSPACE, default 10000; PREFIX,
-- default key): Redis keeps one keyspace for all types, so each operation has its own prefix.

local keyspace = tonumber(os.getenv("KEYSPACE") or "10000")
math.randomseed(os.time() + math.floor(os.clock() * 1e6) + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)

local prefix = os.getenv("PREFIX") or "key"

function rand_key()
    return string.format(prefix .. ":%012d", math.random(0, keyspace - 1))
end

function rand_member()
    return "m:" .. math.random(0, math.max(keyspace, 1000) - 1)
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'COMPARE_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
            .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
            .. '"p50_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
