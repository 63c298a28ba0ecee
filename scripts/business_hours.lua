-- business_hours.lua — schedule hook: deliver during the partner's office hours.
--
-- Hook:    next_batch(metrics) → when to cut the next batch
-- Input:   metrics.pending, metrics.pending_bytes, metrics.oldest_age (seconds),
--          metrics.local_hour, metrics.local_minute, metrics.weekday (1 = Monday … 7 = Sunday),
--          metrics.now (unix), metrics.zone, metrics.delivery
--          (local = the delivery's `timezone`)
-- Output:  "now" | seconds | "15m" | "17:00" | { at = "09:00", days = "mon-fri" } | nil
--          It is combined with the delivery's other triggers; the earliest wins.
--
-- The answer is a time to cut, kept until it comes (or until another trigger
-- cuts first); the hook is asked again after the next cut.
--
-- Monday-Friday 09:00-17:00: cut at once when 500 leads wait or the oldest
-- has waited 15 minutes, else when the oldest turns 15 minutes old (pair it
-- with `max_records = 500` in [delivery.trigger] so a burst is cut at once).
-- Outside office hours: the next weekday 09:00.
local OPEN, CLOSE = 9, 17

function next_batch(m)
  local weekday = m.weekday <= 5
  local open = weekday and m.local_hour >= OPEN and m.local_hour < CLOSE
  if not open then
    return { at = string.format("%02d:00", OPEN), days = "mon-fri" }
  end
  local age = m.oldest_age or 0
  if m.pending >= 500 or age >= 15 * 60 then
    return "now"
  end
  return 15 * 60 - age
end

function self_test()
  assert(next_batch({ weekday = 2, local_hour = 10, pending = 600 }) == "now")
  assert(next_batch({ weekday = 2, local_hour = 10, pending = 3, oldest_age = 60 }) == 840)
  assert(next_batch({ weekday = 6, local_hour = 10, pending = 600 }).days == "mon-fri")
end
