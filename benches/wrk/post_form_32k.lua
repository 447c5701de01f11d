-- Workload: POST a 32 KB urlencoded form (application/x-www-form-urlencoded)
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local SIZE = 32768
local parts = {}
local n = 0
local i = 0
while true do
  local field = string.format("field%03d=value+number+%d+of+the+form+abcdefghij", i, i)
  local sep = (i == 0) and "" or "&"
  if n + #sep + #field > SIZE - 16 then break end
  parts[#parts + 1] = sep .. field
  n = n + #sep + #field
  i = i + 1
end
local body = table.concat(parts)
body = body .. "&pad=" .. string.rep("z", SIZE - #body - 5)
assert(#body == SIZE)
wrk.method = "POST"
wrk.path   = "/submit"
wrk.body   = body
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
