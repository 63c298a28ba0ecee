//! The schedule hook: `next_batch(metrics)` says when the next batch should
//! be cut — `"now"`, a duration (seconds or `"15m"`), a local time
//! (`{ at = "17:00" }` or `"17:00"`; `{ at = "09:00", days = "mon-fri" }`),
//! or nil for no opinion. It is combined
//! with the delivery's other triggers: whichever fires first cuts.

use super::Script;
use crate::config::ScriptLimits;
use crate::store::PendingStats;
use chrono::{DateTime, Datelike, Timelike, Utc};
use mlua::Value;

/// The hook's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No opinion: only the other triggers count.
    Nothing,
    Now,
    At(DateTime<Utc>),
}

/// Ask `next_batch(metrics)`.
pub fn ask(
    script: &Script,
    limits: &ScriptLimits,
    delivery: &str,
    stats: &PendingStats,
    zone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Result<Verdict, String> {
    script
        .with_vm(limits, |lua| {
            let f: mlua::Function = lua.globals().raw_get("next_batch")?;
            let m = lua.create_table()?;
            let local = now.with_timezone(&zone);
            m.raw_set("delivery", delivery)?;
            m.raw_set("pending", stats.count)?;
            m.raw_set("pending_bytes", stats.bytes)?;
            m.raw_set(
                "oldest_age",
                stats.oldest.map(|o| (now - o).num_seconds().max(0)),
            )?;
            m.raw_set("now", now.timestamp())?;
            m.raw_set("local_hour", local.hour())?;
            m.raw_set("local_minute", local.minute())?;
            // 1 = Monday … 7 = Sunday.
            m.raw_set("weekday", local.weekday().number_from_monday())?;
            m.raw_set("zone", zone.name())?;
            let v: Value = f.call(m)?;
            Ok(verdict(&v, zone, now))
        })
        .map_err(|e| e.to_string())?
}

fn verdict(v: &Value, zone: chrono_tz::Tz, now: DateTime<Utc>) -> Result<Verdict, String> {
    let secs = |s: f64| -> Result<Verdict, String> {
        if !(s.is_finite() && s >= 0.0) {
            return Err(format!(
                "next_batch returned {s}: a duration must be >= 0 seconds"
            ));
        }
        if s > super::response::MAX_WAIT.as_secs_f64() {
            return Err(format!(
                "next_batch returned {s} seconds: more than {} ahead",
                super::response::MAX_WAIT_TEXT
            ));
        }
        if s == 0.0 {
            return Ok(Verdict::Now);
        }
        let d = chrono::Duration::milliseconds((s * 1000.0) as i64);
        Ok(Verdict::At(now + d))
    };
    let local = |hhmm: &str| -> Result<Verdict, String> {
        let t = super::response::next_local(hhmm, zone, now)?;
        chrono::DateTime::from_timestamp(t, 0)
            .map(Verdict::At)
            .ok_or_else(|| "bad time".into())
    };
    match v {
        Value::Nil => Ok(Verdict::Nothing),
        Value::Integer(i) => secs(*i as f64),
        Value::Number(f) => secs(*f),
        Value::String(s) => {
            let s = s.to_string_lossy();
            if s == "now" {
                Ok(Verdict::Now)
            } else if s.len() == 5 && s.as_bytes()[2] == b':' {
                local(&s)
            } else {
                crate::config::parse_duration(&s).and_then(|d| secs(d.as_secs_f64()))
            }
        }
        Value::Table(t) => match t.raw_get::<Option<String>>("at").map_err(|e| e.to_string())? {
            // { at = "09:00", days = "mon-fri" }: the trigger's own `at`/`days` rules.
            Some(at) => match t.raw_get::<Value>("days").map_err(|e| e.to_string())? {
                Value::Nil => local(&at),
                days => {
                    let days: Vec<String> = match days {
                        Value::String(s) => vec![s.to_string_lossy()],
                        Value::Table(list) => list
                            .sequence_values::<String>()
                            .collect::<mlua::Result<_>>()
                            .map_err(|e| format!("days: {e}"))?,
                        other => return Err(format!("days must be a string or a list, not a {}", other.type_name())),
                    };
                    let s = crate::trigger::schedule::Schedule::simple(&at, &days, crate::trigger::schedule::Zone(zone))?;
                    s.next_after(now)
                        .map(Verdict::At)
                        .ok_or_else(|| format!("{at} on {days:?} never comes"))
                }
            },
            None => match t.raw_get::<Value>("after").map_err(|e| e.to_string())? {
                Value::Nil => Err("next_batch returned a table without `at` or `after`".into()),
                other => verdict(&other, zone, now),
            },
        },
        other => Err(format!(
            "next_batch returned a {}: return \"now\", seconds, a duration (\"15m\"), a local time (\"17:00\" or {{ at = \"17:00\" }}) or nil",
            other.type_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_forms() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T15:00:00Z")
            .expect("t")
            .with_timezone(&Utc);
        let ny: chrono_tz::Tz = "America/New_York".parse().expect("tz");
        assert_eq!(verdict(&Value::Nil, ny, now), Ok(Verdict::Nothing));
        assert_eq!(verdict(&Value::Integer(0), ny, now), Ok(Verdict::Now));
        assert_eq!(
            verdict(&Value::Integer(60), ny, now),
            Ok(Verdict::At(now + chrono::Duration::seconds(60)))
        );
        // 10:00 in New York is 15:00 UTC: the next 17:00 local is 22:00 UTC today.
        let lua = mlua::Lua::new();
        let s = Value::String(lua.create_string("17:00").expect("s"));
        assert_eq!(
            verdict(&s, ny, now),
            Ok(Verdict::At(now + chrono::Duration::hours(7)))
        );
        let bad = Value::Boolean(true);
        assert!(verdict(&bad, ny, now).is_err());
    }
}
