//! The `consign` module every script sees: text helpers that match the
//! built-in field transforms, dates in IANA zones, hashes, JSON, logging
//! with the script's file and line, and `consign.null`.

use super::value;
use mlua::{Lua, LuaSerdeExt, Table, Value, Variadic};
use sha2::{Digest, Sha256};

/// Build the `consign` table for `lua`.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set("null", lua.null())?;
    m.raw_set(
        "digits_only",
        lua.create_function(|_, s: Option<mlua::LuaString>| {
            Ok(s.map(|s| crate::assemble::mapping::digits_only(&s.to_string_lossy())))
        })?,
    )?;
    m.raw_set(
        "trim",
        lua.create_function(|_, s: Option<mlua::LuaString>| {
            Ok(s.map(|s| s.to_string_lossy().trim().to_string()))
        })?,
    )?;
    m.raw_set(
        "upper",
        lua.create_function(|_, s: Option<mlua::LuaString>| {
            Ok(s.map(|s| s.to_string_lossy().to_uppercase()))
        })?,
    )?;
    m.raw_set(
        "lower",
        lua.create_function(|_, s: Option<mlua::LuaString>| {
            Ok(s.map(|s| s.to_string_lossy().to_lowercase()))
        })?,
    )?;
    m.raw_set(
        "sha256",
        lua.create_function(|_, s: mlua::LuaString| Ok(hex::encode(Sha256::digest(s.as_bytes()))))?,
    )?;
    m.raw_set(
        "md5",
        lua.create_function(|_, s: mlua::LuaString| {
            use md5::Digest as _;
            Ok(hex::encode(md5::Md5::digest(s.as_bytes())))
        })?,
    )?;
    m.raw_set(
        "json_encode",
        lua.create_function(|lua, v: Value| {
            let mut out = String::new();
            value::write_json(lua, &mut out, &v)
                .map_err(|e| mlua::Error::runtime(format!("consign.json_encode: {e}")))?;
            Ok(out)
        })?,
    )?;
    m.raw_set(
        "json_decode",
        lua.create_function(|lua, s: mlua::LuaString| {
            let v: serde_json::Value = serde_json::from_slice(&s.as_bytes())
                .map_err(|e| mlua::Error::runtime(format!("consign.json_decode: {e}")))?;
            value::json_to_lua(lua, &v)
        })?,
    )?;
    m.raw_set(
        "date_parse",
        lua.create_function(
            |_, (text, format, zone): (String, String, Option<String>)| match date_parse(
                &text,
                &format,
                zone.as_deref(),
            ) {
                Ok(t) => Ok((Some(t), None)),
                Err(e) => Ok((None, Some(e))),
            },
        )?,
    )?;
    m.raw_set(
        "date_format",
        lua.create_function(|_, (t, format, zone): (i64, String, Option<String>)| {
            date_format(t, &format, zone.as_deref()).map_err(mlua::Error::runtime)
        })?,
    )?;
    m.raw_set(
        "log",
        lua.create_function(|lua, args: Variadic<Value>| {
            let (level, parts) = match args.first() {
                Some(Value::String(s))
                    if args.len() > 1
                        && matches!(
                            s.as_bytes().as_ref(),
                            b"debug" | b"info" | b"warn" | b"error"
                        ) =>
                {
                    (s.to_string_lossy(), &args[1..])
                }
                _ => ("info".to_string(), &args[..]),
            };
            let text: Vec<String> = parts.iter().map(display).collect();
            let text = text.join(" ");
            let at = lua
                .inspect_stack(1, |d| {
                    let src = d.source();
                    format!(
                        "{}:{}",
                        src.short_src.as_deref().unwrap_or("?"),
                        d.current_line().unwrap_or(0)
                    )
                })
                .unwrap_or_else(|| "?".into());
            match level.as_str() {
                "debug" => tracing::debug!(script = %at, "{text}"),
                "warn" => tracing::warn!(script = %at, "{text}"),
                "error" => tracing::error!(script = %at, "{text}"),
                _ => tracing::info!(script = %at, "{text}"),
            }
            Ok(())
        })?,
    )?;
    Ok(m)
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string_lossy(),
        Value::Nil => "nil".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Number(f) => f.to_string(),
        other => format!("<{}>", other.type_name()),
    }
}

fn zone(name: Option<&str>) -> Result<chrono_tz::Tz, String> {
    match name {
        None => Ok(chrono_tz::UTC),
        Some(z) => z.parse().map_err(|_| {
            format!("unknown time zone {z:?} (use an IANA name such as \"America/New_York\")")
        }),
    }
}

/// Local text in `zone` (default UTC) → unix seconds. Formats are strftime
/// (`%Y-%m-%d %H:%M`); a format with a date only means local midnight.
pub fn date_parse(text: &str, format: &str, zone_name: Option<&str>) -> Result<i64, String> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let tz = zone(zone_name)?;
    if let Ok(dt) = chrono::DateTime::parse_from_str(text, format) {
        return Ok(dt.timestamp());
    }
    let naive = match NaiveDateTime::parse_from_str(text, format) {
        Ok(n) => n,
        Err(_) => NaiveDate::parse_from_str(text, format)
            .map_err(|e| format!("{text:?} does not match {format:?}: {e}"))?
            .and_time(chrono::NaiveTime::MIN),
    };
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp())
        .ok_or_else(|| format!("{text:?} does not exist in {tz} (skipped by a DST change)"))
}

/// Unix seconds → text in `zone` (default UTC), strftime format.
pub fn date_format(t: i64, format: &str, zone_name: Option<&str>) -> Result<String, String> {
    use std::fmt::Write;
    let tz = zone(zone_name)?;
    let at = chrono::DateTime::from_timestamp(t, 0)
        .ok_or_else(|| format!("{t} is out of range for a date"))?
        .with_timezone(&tz);
    let mut out = String::new();
    write!(out, "{}", at.format(format)).map_err(|_| format!("invalid date format {format:?}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_zones() {
        let t = date_parse("2026-03-08 02:30", "%Y-%m-%d %H:%M", Some("UTC")).expect("utc");
        assert_eq!(
            date_format(t, "%Y-%m-%d %H:%M", None).expect("fmt"),
            "2026-03-08 02:30"
        );
        // 02:30 does not exist in New York that night.
        assert!(date_parse(
            "2026-03-08 02:30",
            "%Y-%m-%d %H:%M",
            Some("America/New_York")
        )
        .is_err());
        let d = date_parse("2026-12-04", "%Y-%m-%d", Some("America/New_York")).expect("date");
        assert_eq!(
            date_format(d, "%Y-%m-%dT%H:%M%z", Some("America/New_York")).expect("fmt"),
            "2026-12-04T00:00-0500"
        );
        assert!(
            date_parse("x", "%Y", Some("EST5")).is_err() || date_parse("x", "%Y", None).is_err()
        );
        assert!(zone(Some("Mars/Olympus")).is_err());
    }
}
