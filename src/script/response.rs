//! The partner-response handler: `on_response(outcome, ctx)` sees every
//! delivery attempt's outcome (HTTP status, headers, body and parsed JSON;
//! FTP/SFTP reply code and message; the error class) and returns what to do.
//! The delivery worker carries the action out with its usual machinery.

use super::{value, Script};
use crate::config::ScriptLimits;
use crate::destination::Reply;
use chrono::{DateTime, TimeZone, Utc};
use mlua::{Lua, Table, Value};
use std::time::Duration;

/// What the handler decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Let the built-in classification decide (the handler returned nil).
    Default,
    /// Count the attempt as delivered.
    Success,
    /// Try again (after this long, else per the retry policy).
    Retry(Option<Duration>),
    /// Wait until this instant (partner quota): the batch is `delayed`.
    DelayUntil(DateTime<Utc>),
    /// The partner already has it (duplicate batch): `skipped`.
    Skip(String),
    /// The partner cannot read the file: manual queue, flagged for a reformat.
    Reformat(String),
    /// Suspend the whole delivery (like an auth failure).
    Suspend(String),
    /// Give up on this batch: `failed`.
    Fail(String),
    /// Delivered except these record ids, which the partner refused.
    Partial { failed: Vec<i64>, reason: String },
}

impl Action {
    /// The action in words (`consign script test`), times in `zone`.
    pub fn describe(&self, zone: chrono_tz::Tz) -> String {
        let local = |t: &DateTime<Utc>| t.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S %Z");
        match self {
            Action::Default => {
                "default: the built-in rules decide (the handler returned nil)".into()
            }
            Action::Success => "success: the attempt counts as delivered".into(),
            Action::Retry(None) => "retry: after the retry policy's backoff".into(),
            Action::Retry(Some(d)) => format!("retry: after {}", humantime::format_duration(*d)),
            Action::DelayUntil(t) => format!("delay_until: {} ({})", local(t), t.to_rfc3339()),
            Action::Skip(r) => format!("skip: {r}"),
            Action::Reformat(r) => format!("reformat: {r}"),
            Action::Suspend(r) => format!("suspend: {r}"),
            Action::Fail(r) => format!("fail: {r}"),
            Action::Partial { failed, reason } => format!(
                "partial: {} record(s) refused ({}): {reason}",
                failed.len(),
                failed
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// One attempt as the handler sees it.
pub struct Outcome<'a> {
    pub ok: bool,
    /// Error class (`auth`, `transient`, ...) when the attempt failed.
    pub class: Option<&'a str>,
    pub message: &'a str,
    pub reply: Option<&'a Reply>,
    pub attempt: u32,
    pub batch_id: &'a str,
    pub delivery: &'a str,
    pub record_count: u64,
    pub destination: &'a str,
    pub zone: chrono_tz::Tz,
    pub now: DateTime<Utc>,
}

/// Call `on_response`. An error in the handler is returned (the worker then
/// falls back to the built-in decision and logs it).
pub fn handle(script: &Script, limits: &ScriptLimits, o: &Outcome<'_>) -> Result<Action, String> {
    script
        .with_vm(limits, |lua| {
            let f: mlua::Function = lua.globals().raw_get("on_response")?;
            let outcome = outcome_table(lua, o)?;
            let ctx = context(lua, o)?;
            let ret: mlua::MultiValue = f.call((outcome, ctx))?;
            Ok(parse_action(ret.into_iter().collect(), o))
        })
        .map_err(|e| e.to_string())?
}

fn outcome_table(lua: &Lua, o: &Outcome<'_>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("ok", o.ok)?;
    t.raw_set("class", o.class.unwrap_or("ok"))?;
    t.raw_set("message", o.message)?;
    t.raw_set("attempt", o.attempt)?;
    t.raw_set("destination", o.destination)?;
    let headers = lua.create_table()?;
    t.raw_set("headers", &headers)?;
    if let Some(r) = o.reply {
        if let Some(code) = r.code {
            t.raw_set("status", code)?;
            t.raw_set("code", code)?;
        }
        t.raw_set("reply", r.message.as_str())?;
        for (k, v) in &r.headers {
            headers.raw_set(k.as_str(), v.as_str())?;
        }
        if let Some(body) = &r.body {
            t.raw_set("body", body.as_str())?;
            if let Ok(j) = serde_json::from_str::<serde_json::Value>(body) {
                t.raw_set("json", value::json_to_lua(lua, &j)?)?;
            }
        }
    }
    Ok(t)
}

fn context(lua: &Lua, o: &Outcome<'_>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("delivery", o.delivery)?;
    t.raw_set("batch_id", o.batch_id)?;
    t.raw_set("record_count", o.record_count)?;
    t.raw_set("zone", o.zone.name())?;
    t.raw_set("now", o.now.timestamp())?;
    let zone = o.zone;
    let now = o.now;
    // ctx.next_local("00:00") → unix time of the next such local time in the delivery's zone.
    t.raw_set(
        "next_local",
        lua.create_function(move |_, hhmm: String| {
            next_local(&hhmm, zone, now).map_err(mlua::Error::runtime)
        })?,
    )?;
    Ok(t)
}

/// The next instant after `now` whose local time in `zone` is `hh:mm`.
pub fn next_local(hhmm: &str, zone: chrono_tz::Tz, now: DateTime<Utc>) -> Result<i64, String> {
    let t = chrono::NaiveTime::parse_from_str(hhmm, "%H:%M")
        .map_err(|_| format!("{hhmm:?} is not a local time HH:MM"))?;
    let local_now = now.with_timezone(&zone);
    for days in 0..3 {
        let date = local_now.date_naive() + chrono::Duration::days(days);
        if let Some(at) = zone.from_local_datetime(&date.and_time(t)).earliest() {
            if at.with_timezone(&Utc) > now {
                return Ok(at.timestamp());
            }
        }
    }
    Err(format!("no local time {hhmm} in {zone} in the next days"))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_string_lossy()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Number(f) => Some(f.to_string()),
        _ => None,
    }
}

/// The longest wait a script may ask for (retry after, delay until, next batch).
pub const MAX_WAIT: Duration = Duration::from_secs(366 * 24 * 3600);
/// [`MAX_WAIT`] in words.
pub const MAX_WAIT_TEXT: &str = "366 days";

/// `after`/`retry` as seconds or a duration string, at most [`MAX_WAIT`].
fn duration(v: &Value) -> Result<Option<Duration>, String> {
    let too_long = || format!("`after` is more than {}: ask for less", MAX_WAIT_TEXT);
    let d = match v {
        Value::Nil => return Ok(None),
        Value::Integer(i) if *i >= 0 => Duration::from_secs(*i as u64),
        Value::Number(f) if *f >= 0.0 && f.is_finite() => {
            if *f > MAX_WAIT.as_secs_f64() {
                return Err(too_long());
            }
            Duration::from_secs_f64(*f)
        }
        Value::String(s) => crate::config::parse_duration(&s.to_string_lossy())?,
        other => {
            return Err(format!(
                "`after` must be seconds or a duration like \"15m\", not a {}",
                other.type_name()
            ))
        }
    };
    if d > MAX_WAIT {
        return Err(too_long());
    }
    Ok(Some(d))
}

/// A `delay_until` time: not in the past, at most [`MAX_WAIT`] ahead.
fn within_a_year(t: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if t < now - chrono::Duration::minutes(1) {
        return Err(format!("`until` {} is in the past", t.to_rfc3339()));
    }
    if t - now > chrono::Duration::from_std(MAX_WAIT).unwrap_or(chrono::Duration::MAX) {
        return Err(format!(
            "`until` {} is more than {} ahead",
            t.to_rfc3339(),
            MAX_WAIT_TEXT
        ));
    }
    Ok(t)
}

/// `until` as unix seconds, or `"HH:MM"` (next such local time), or `"YYYY-MM-DD HH:MM"` local.
fn instant(v: &Value, o: &Outcome<'_>) -> Result<DateTime<Utc>, String> {
    match v {
        Value::Integer(i) => Utc
            .timestamp_opt(*i, 0)
            .single()
            .ok_or_else(|| format!("{i} is not a time")),
        Value::Number(f) => Utc
            .timestamp_opt(*f as i64, 0)
            .single()
            .ok_or_else(|| format!("{f} is not a time")),
        Value::String(s) => {
            let s = s.to_string_lossy();
            if s.len() == 5 {
                let t = next_local(&s, o.zone, o.now)?;
                return Utc
                    .timestamp_opt(t, 0)
                    .single()
                    .ok_or_else(|| "bad time".into());
            }
            let t = super::helpers::date_parse(&s, "%Y-%m-%d %H:%M", Some(o.zone.name()))?;
            Utc.timestamp_opt(t, 0)
                .single()
                .ok_or_else(|| "bad time".into())
        }
        other => Err(format!(
            "`until` must be unix seconds, \"HH:MM\" or \"YYYY-MM-DD HH:MM\", not a {}",
            other.type_name()
        )),
    }
}

/// The handler's return: `"retry"`, `"retry", "10m"`, or a table
/// `{ action = "delay_until", until = ..., reason = ... }`.
fn parse_action(ret: Vec<Value>, o: &Outcome<'_>) -> Result<Action, String> {
    let first = ret.first().cloned().unwrap_or(Value::Nil);
    let (name, table) = match &first {
        Value::Nil => return Ok(Action::Default),
        Value::String(s) => (s.to_string_lossy(), None),
        Value::Table(t) => match t.raw_get::<Value>("action").map_err(|e| e.to_string())? {
            Value::String(s) => (s.to_string_lossy(), Some(t.clone())),
            _ => return Err("the returned table has no `action` string".into()),
        },
        other => {
            return Err(format!(
                "on_response returned a {}: return an action name (\"success\", \"retry\", ...) or a table {{ action = ... }}",
                other.type_name()
            ))
        }
    };
    let get = |key: &str, pos: usize| -> Value {
        match &table {
            Some(t) => t.raw_get::<Value>(key).unwrap_or(Value::Nil),
            None => ret.get(pos).cloned().unwrap_or(Value::Nil),
        }
    };
    let reason = text(&get("reason", 1)).unwrap_or_else(|| format!("on_response said {name}"));
    Ok(match name.as_str() {
        "default" => Action::Default,
        "success" => Action::Success,
        "retry" => Action::Retry(duration(&get("after", 1))?),
        "delay_until" => {
            let v = get("until", 1);
            if v.is_nil() {
                return Err("delay_until needs `until` (unix seconds, \"HH:MM\" or \"YYYY-MM-DD HH:MM\")".into());
            }
            Action::DelayUntil(within_a_year(instant(&v, o)?, o.now)?)
        }
        "skip" => Action::Skip(reason),
        "reformat" => Action::Reformat(reason),
        "suspend" => Action::Suspend(reason),
        "fail" => Action::Fail(reason),
        "partial" => {
            let ids = get("ids", 1);
            let Value::Table(ids) = ids else {
                return Err("partial needs `ids`: the record ids the partner refused".into());
            };
            let mut failed = Vec::new();
            for v in ids.sequence_values::<Value>() {
                match v.map_err(|e| e.to_string())? {
                    Value::Integer(i) => failed.push(i),
                    Value::String(s) => failed.push(
                        s.to_string_lossy()
                            .parse()
                            .map_err(|_| "partial: ids must be record ids (numbers)".to_string())?,
                    ),
                    Value::Number(f) if f.fract() == 0.0 => failed.push(f as i64),
                    other => return Err(format!("partial: an id is a {}", other.type_name())),
                }
            }
            let reason = match &table {
                Some(t) => t
                    .raw_get::<Option<String>>("reason")
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "refused by the partner".into()),
                None => text(&ret.get(2).cloned().unwrap_or(Value::Nil))
                    .unwrap_or_else(|| "refused by the partner".into()),
            };
            Action::Partial { failed, reason }
        }
        other => {
            return Err(format!(
                "unknown action {other:?} (expected success, retry, delay_until, skip, reformat, suspend, fail, partial or nil)"
            ))
        }
    })
}
