-- wrk script for crdtkv: OP (env) is one of set, get, incr, sadd, pfadd, batch.
-- batch: POST /v1/batch of BATCH (env, default 100) registers.set ops; the bodies are
-- built once per thread (a pool of 256) so wrk spends its time sending, not formatting.
package.path = package.path .. ";" .. (os.getenv("LUA_DIR") or ".") .. "/?.lua"
require("common")

local op = os.getenv("OP") or "get"
local batch = tonumber(os.getenv("BATCH") or "100")
local json = { ["Content-Type"] = "application/json" }
local pool = {}
local next_body = 1

init = function(args)
    if op == "batch" then
        for i = 1, 256 do
            local ops = {}
            for j = 1, batch do
                ops[j] = '{"op":"registers.set","key":"' .. rand_key() .. '","value":"xxx"}'
            end
            pool[i] = '{"ops":[' .. table.concat(ops, ",") .. "]}"
        end
    end
end

request = function()
    if op == "batch" then
        local body = pool[next_body]
        next_body = next_body % #pool + 1
        return wrk.format("POST", "/v1/batch", json, body)
    end
    local key = rand_key()
    if op == "set" then
        return wrk.format("PUT", "/v1/registers/" .. key, json, '{"value":"xxx"}')
    elseif op == "get" then
        return wrk.format("GET", "/v1/registers/" .. key)
    elseif op == "incr" then
        return wrk.format("POST", "/v1/counters/" .. key, json, '{"delta":1}')
    elseif op == "sadd" then
        return wrk.format("POST", "/v1/sets/" .. key .. "/add", json,
            '{"members":["' .. rand_member() .. '"]}')
    end
    return wrk.format("POST", "/v1/hlls/" .. key .. "/add", json,
        '{"items":["' .. rand_member() .. '"]}')
end
