-- partner_response.lua — partner-response handler for JSON batch APIs.
--
-- Hook:    on_response(outcome, ctx) → action
-- Input:   outcome.ok          true when the destination accepted the upload
--          outcome.class       "ok", or the error class: connect, timeout,
--                              transient, auth, host_key, permission, not_found, permanent
--          outcome.status      HTTP status (FTP/SFTP: reply code), when there is one
--          outcome.headers     reply headers (lower-case names)
--          outcome.body        reply body text; outcome.json: the body parsed, if JSON
--          outcome.message     the error or receipt text; outcome.attempt (1, 2, ...)
--          ctx.delivery, ctx.batch_id, ctx.record_count, ctx.zone, ctx.now (unix),
--          ctx.next_local("HH:MM") → unix time of the next such local time
-- Output:  nil (the built-in rules decide) or one of
--          "success" | "retry" [, after] | { action = "delay_until", ["until"] = t }
--          "skip", reason | "reformat", reason | "suspend", reason | "fail", reason
--          { action = "partial", ids = { record ids the partner refused }, reason = ... }
--
-- This partner answers 200 {"status":"accepted"}; errors carry {"error": CODE}:
--   quota_exceeded (429)   → wait until midnight in the delivery's zone
--   duplicate_batch (409)  → the partner has it already: skip
--   invalid_format (400)   → an operator must change the layout: reformat
--   rejected_records (422) with "ids": [...] → partial
function on_response(o, ctx)
  local err = o.json and o.json.error
  if o.ok then
    if o.json and o.json.status == "error" then   -- 200 with an error inside
      return "retry", "10m"
    end
    return "success"
  end
  if err == "quota_exceeded" or o.status == 429 and o.headers["retry-after"] == nil then
    return { action = "delay_until", ["until"] = ctx.next_local("00:00"), reason = "daily quota" }
  end
  if err == "duplicate_batch" or o.status == 409 then
    return "skip", "partner already has batch " .. ctx.batch_id
  end
  if err == "invalid_format" then
    return "reformat", o.json.detail or o.body
  end
  if err == "rejected_records" and o.json.ids then
    return { action = "partial", ids = o.json.ids, reason = o.json.detail or "rejected by the partner" }
  end
  return nil  -- 5xx, timeouts, auth: the built-in retry/suspend rules
end

function self_test()
  local ctx = { batch_id = "B", next_local = function() return 0 end }
  assert(on_response({ ok = true }, ctx) == "success")
  assert(on_response({ ok = false, status = 409, headers = {} }, ctx) == "skip")
  local a = on_response({ ok = false, status = 429, headers = {}, json = { error = "quota_exceeded" } }, ctx)
  assert(a.action == "delay_until")
  assert(on_response({ ok = false, status = 503, headers = {} }, ctx) == nil)
end
