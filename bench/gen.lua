-- Writes N lines "KEY:VALUE" for `eddy produce --key-separator :`: values
-- are JSON objects of about 200 bytes, keys spread over K customers.
--   lua5.4 bench/gen.lua N K > FILE
local n = tonumber(arg[1] or "200000")
local k = tonumber(arg[2] or "10000")
local out = {}
math.randomseed(42)
local pad = string.rep("x", 64)
for i = 1, n do
  local key = string.format("customer-%05d", (i * 7919) % k)
  out[#out + 1] = string.format(
    '%s:{"id":%d,"customer":"%s","total":%d.%02d,"currency":"EUR",' ..
    '"items":[{"sku":"A-%d","qty":%d},{"sku":"B-%d","qty":1}],"note":"%s"}',
    key, i, key, math.random(1, 999), math.random(0, 99), i % 500, i % 5 + 1,
    i % 300, pad)
  if #out == 10000 then io.write(table.concat(out, "\n"), "\n"); out = {} end
end
if #out > 0 then io.write(table.concat(out, "\n"), "\n") end
