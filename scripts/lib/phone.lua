-- lib/phone.lua: phone helpers shared by partner transforms.
-- require("lib.phone") from any script in this folder.
local M = {}

-- US phone to 10 digits: "(555) 123-4567", "+1 555.123.4567", "001-555-123-4567x89"
-- → "5551234567". Returns nil when it is not a 10-digit US number.
function M.us10(text)
  if text == nil then return nil end
  local d = consign.digits_only(tostring(text))   -- drops an extension (x89, ext. 12)
  if #d == 13 and d:sub(1, 3) == "001" then d = d:sub(4) end
  if #d == 11 and d:sub(1, 1) == "1" then d = d:sub(2) end
  if #d ~= 10 then return nil end
  return d
end

return M
