-- wrk script: POST eth_getBalance(ADDR, "latest") with `x-keel-verify: MODE` (unset: no header).
-- BLOCKS=each asks for a new block number on every request instead of "latest" (so that no
-- state root can be reused). Counts answers that are JSON-RPC errors or lack the expected `x-keel-verified` prefix
-- (EXPECT), and prints one RESULT line at the end.
local addr = os.getenv("ADDR")
local mode = os.getenv("MODE") or ""
local expect = os.getenv("EXPECT") or ""
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["' .. addr .. '","latest"]}'
wrk.headers["Content-Type"] = "application/json"
if mode ~= "" then wrk.headers["x-keel-verify"] = mode end
if os.getenv("BLOCKS") == "each" then
  local n = 0
  function request()
    n = n + 1
    return wrk.format(nil, nil, nil, string.format(
      '{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["%s","0x%x"]}', addr, n))
  end
end

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init() bad = 0 end
function response(status, headers, body)
  local v = headers["x-keel-verified"] or headers["X-Keel-Verified"] or ""
  if status ~= 200 or body:find('"error"') or v:sub(1, #expect) ~= expect then
    bad = bad + 1
    if bad == 1 then io.stderr:write("first bad answer: " .. status .. " " .. v .. " " .. body .. "\n") end
  end
end

function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f errors=%d bad=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout, b, summary.requests))
end
