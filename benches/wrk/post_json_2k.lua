-- Workload: POST a 2 KB JSON document (Content-Type: application/json)
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local SIZE = 2048
local items = {}
for i = 1, 12 do
  items[#items + 1] = string.format(
    '{"id":%d,"sku":"SKU-%05d","name":"Item number %d","qty":%d,"price":%d.%02d}',
    i, i * 37, i, i % 5 + 1, i * 3, i * 7 % 100)
end
local head = '{"order_id":"ORD-2024-000123","customer":{"name":"Ada Lovelace",' ..
             '"email":"ada@example.com"},"items":[' .. table.concat(items, ",") .. '],"note":"'
local tail = '"}'
local pad = SIZE - #head - #tail
assert(pad >= 0, "JSON skeleton larger than " .. SIZE)
local body = head .. string.rep("x", pad) .. tail
assert(#body == SIZE)
wrk.method = "POST"
wrk.path   = "/api/orders"
wrk.body   = body
wrk.headers["Content-Type"] = "application/json"
