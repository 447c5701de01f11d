-- Workload: plain GET /
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
wrk.method = "GET"
wrk.path   = "/"
