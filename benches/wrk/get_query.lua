-- Workload: GET with 10 query arguments (benign values, some percent-encoded)
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
wrk.method = "GET"
wrk.path   = "/search?q=portable+gateway&page=2&per_page=50&sort=desc&lang=en-GB" ..
             "&from=2024-01-01&to=2024-12-31&fields=id%2Cname%2Cprice&category=books&session=7f3a9c21e4b8"
