-- acme_transform.lua — partner transform for ACME Leads.
--
-- Hook:    transform(record, ctx) → record | nil, reason
-- Mode:    after_mapping (the default): `record` holds the delivery's output
--          columns, already mapped: first_name, last_name, company, phone,
--          email, source, stage.
-- Input:   ctx.delivery, ctx.batch_id, ctx.record_id (the stored record's id).
-- Output:  the record (changed in place), with
--            phone  10 US digits (records without one are dropped),
--            email  trimmed, lower case (records without an @ are dropped),
--            stage  upper case,
--            lead_key  first 16 hex of sha256(email) — ACME's dedupe key,
--            partner_batch  the batch id;
--          nil plus a reason drops the record (listed in `consign batches show`).
-- Errors:  a Lua error rejects only that record (on_error = "reject").
local phone = require("lib.phone")

function transform(r, ctx)
  local p = phone.us10(r.phone)
  if not p then
    return nil, "no 10-digit US phone: " .. tostring(r.phone)
  end
  r.phone = p
  local email = consign.lower(consign.trim(r.email or ""))
  if not email:find("@", 1, true) then
    return nil, "no email address"
  end
  r.email = email
  r.stage = consign.upper(r.stage or "")
  r.lead_key = consign.sha256(email):sub(1, 16)
  r.partner_batch = ctx.batch_id
  return r
end

-- Run at every load and reload: a version that fails it is never swapped in.
function self_test()
  local r = transform({ phone = "+1 (555) 123-4567 x89", email = " Ann@Example.COM ", stage = "new" },
                      { batch_id = "T" })
  assert(r and r.phone == "5551234567", "phone")
  assert(r.email == "ann@example.com", "email")
  assert(r.stage == "NEW" and #r.lead_key == 16, "stage/key")
  assert(transform({ phone = "12", email = "a@b" }, {}) == nil, "short phone dropped")
end
