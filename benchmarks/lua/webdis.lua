-- wrk script for webdis: OP (env) is one of set, get, incr, sadd, pfadd.
-- Every request is a GET of /COMMAND/key[/arg], as webdis maps URLs to Redis commands.
package.path = package.path .. ";" .. (os.getenv("LUA_DIR") or ".") .. "/?.lua"
require("common")

local op = os.getenv("OP") or "get"

request = function()
    local key = rand_key()
    local path
    if op == "set" then
        path = "/SET/" .. key .. "/xxx"
    elseif op == "get" then
        path = "/GET/" .. key
    elseif op == "incr" then
        path = "/INCR/" .. key
    elseif op == "sadd" then
        path = "/SADD/" .. key .. "/" .. rand_member()
    else
        path = "/PFADD/" .. key .. "/" .. rand_member()
    end
    return wrk.format("GET", path)
end
