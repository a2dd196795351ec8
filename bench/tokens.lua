-- wrk script: GET /api/items with "Authorization: Bearer <token>", rotating through
-- the lines of $TOKENS_FILE (one line = one repeated token); no file = no token.
-- $TOKENS_START (default 0) is the line to start after: a warm-up that starts
-- elsewhere leaves the measured run's tokens uncached.
local tokens = {}
local file = os.getenv("TOKENS_FILE")
if file and file ~= "" then
  for line in io.lines(file) do
    if line ~= "" then tokens[#tokens + 1] = line end
  end
end
local i = tonumber(os.getenv("TOKENS_START") or "0")
request = function()
  if #tokens == 0 then
    return wrk.format("GET", "/api/items")
  end
  i = i % #tokens + 1
  return wrk.format("GET", "/api/items", { ["Authorization"] = "Bearer " .. tokens[i] })
end
