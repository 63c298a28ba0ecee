//! JSON ↔ Lua values, keeping identifiers exact: an integer that fits in 64
//! bits becomes a Lua integer (never `5.551234567e+09`, never `.0`), a
//! longer one stays a string, and a number the script did not change is
//! written back with its original spelling. JSON `null` inside arrays and
//! objects is `consign.null`, so arrays keep their length; arrays a script
//! builds with nil holes are written with `null` in the holes.

use mlua::{Lua, LuaSerdeExt, Table, Value};
use serde_json::value::RawValue;

/// Tables nested deeper than this are refused (and cycles with them).
const MAX_DEPTH: usize = 64;

/// A record field's raw JSON as a Lua value (top-level `null` is `nil`).
pub fn raw_to_lua(lua: &Lua, raw: &RawValue) -> mlua::Result<Value> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => match crate::assemble::mapping::raw_text(raw) {
            Some(s) => Ok(Value::String(lua.create_string(s.as_bytes())?)),
            None => Ok(Value::Nil),
        },
        Some(b't') => Ok(Value::Boolean(true)),
        Some(b'f') => Ok(Value::Boolean(false)),
        Some(b'n') | None => Ok(Value::Nil),
        Some(b'{') | Some(b'[') => {
            let v: serde_json::Value = serde_json::from_str(text).map_err(mlua::Error::external)?;
            json_to_lua(lua, &v)
        }
        Some(_) => number_to_lua(lua, text),
    }
}

fn number_to_lua(lua: &Lua, text: &str) -> mlua::Result<Value> {
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Value::Integer(i));
    }
    if !text.contains(['.', 'e', 'E']) {
        // An integer too long for 64 bits (an identifier): exact as text.
        return Ok(Value::String(lua.create_string(text)?));
    }
    match text.parse::<f64>() {
        Ok(f) => Ok(Value::Number(f)),
        Err(_) => Ok(Value::String(lua.create_string(text)?)),
    }
}

/// A parsed JSON value as Lua.
pub fn json_to_lua(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => lua.null(),
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => number_to_lua(lua, &n.to_string())?,
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, json_to_lua(lua, item)?)?;
            }
            t.set_metatable(Some(lua.array_metatable()))?;
            Value::Table(t)
        }
        J::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, item) in map {
                t.raw_set(k.as_str(), json_to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}

/// Append the JSON text of a Lua value.
pub fn write_json(lua: &Lua, out: &mut String, v: &Value) -> Result<(), String> {
    write_value(lua, out, v, 0)
}

fn write_value(lua: &Lua, out: &mut String, v: &Value, depth: usize) -> Result<(), String> {
    match v {
        Value::Nil => out.push_str("null"),
        Value::LightUserData(u) if u.0.is_null() => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => out.push_str(itoa::Buffer::new().format(*i)),
        Value::Number(f) => write_float(out, *f)?,
        Value::String(s) => {
            let s = s
                .to_str()
                .map_err(|_| "a string that is not valid UTF-8".to_string())?;
            push_json_string(out, &s);
        }
        Value::Table(t) => write_table(lua, out, t, depth)?,
        other => {
            return Err(format!(
                "a {} cannot be written to a record (only strings, numbers, booleans, tables, nil and consign.null)",
                other.type_name()
            ))
        }
    }
    Ok(())
}

/// A float as JSON: integral values without `.0`, others in their shortest exact form.
pub(crate) fn write_float(out: &mut String, f: f64) -> Result<(), String> {
    if !f.is_finite() {
        return Err(format!("{f} is not a JSON number"));
    }
    if f.fract() == 0.0 && f.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(f as i64));
    } else {
        out.push_str(&f.to_string());
    }
    Ok(())
}

pub fn push_json_string(out: &mut String, s: &str) {
    // Most field names and values need no escaping: copy them as they are.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    // serde_json's escaping (control characters, quotes, backslashes).
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

fn write_table(lua: &Lua, out: &mut String, t: &Table, depth: usize) -> Result<(), String> {
    if depth >= MAX_DEPTH {
        return Err(format!(
            "tables nested deeper than {MAX_DEPTH} levels (a table that contains itself?)"
        ));
    }
    let mut entries: Vec<(Value, Value)> = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        entries.push(pair.map_err(|e| e.to_string())?);
    }
    let is_array_mt = t.metatable().is_some_and(|m| m == lua.array_metatable());
    let max_index = entries.iter().try_fold(0i64, |max, (k, _)| match k {
        Value::Integer(i) if *i >= 1 => Some(max.max(*i)),
        _ => None,
    });
    match max_index {
        Some(n) if n > 0 || is_array_mt => {
            if n > 4 * entries.len() as i64 + 16 {
                return Err(format!(
                    "an array with only {} values up to index {n}: too sparse to write",
                    entries.len()
                ));
            }
            out.push('[');
            for i in 1..=n {
                if i > 1 {
                    out.push(',');
                }
                match entries
                    .iter()
                    .find(|(k, _)| matches!(k, Value::Integer(x) if *x == i))
                {
                    Some((_, v)) => write_value(lua, out, v, depth + 1)?,
                    // A nil hole: written deliberately as null, the array keeps its length.
                    None => out.push_str("null"),
                }
            }
            out.push(']');
        }
        _ => {
            let mut keyed: Vec<(String, &Value)> = Vec::with_capacity(entries.len());
            for (k, v) in &entries {
                let key = match k {
                    Value::String(s) => s
                        .to_str()
                        .map_err(|_| "a key that is not valid UTF-8".to_string())?
                        .to_string(),
                    Value::Integer(i) => i.to_string(),
                    other => return Err(format!("a {} cannot be a JSON key", other.type_name())),
                };
                keyed.push((key, v));
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            let mut first = true;
            for (k, v) in &keyed {
                push_key(out, &mut first, k);
                write_value(lua, out, v, depth + 1)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Append the JSON text of a Lua value that replaces `like` (the field's
/// original JSON): parts the script left alone keep their original text
/// (number spelling, escapes) and object keys keep their original order
/// (added keys follow, sorted), at every depth.
pub fn write_json_like(
    lua: &Lua,
    out: &mut String,
    v: &Value,
    like: &RawValue,
) -> Result<(), String> {
    // Left alone entirely: the original text as it was (whitespace included).
    if unchanged_whole(lua, v, like) {
        out.push_str(like.get());
        return Ok(());
    }
    write_like(lua, out, v, like, 0)
}

/// `"key":` of an object member, after a comma unless it is the first.
pub fn push_key(out: &mut String, first: &mut bool, key: &str) {
    if !std::mem::take(first) {
        out.push(',');
    }
    push_json_string(out, key);
    out.push(':');
}

fn write_like(
    lua: &Lua,
    out: &mut String,
    v: &Value,
    like: &RawValue,
    depth: usize,
) -> Result<(), String> {
    if depth >= MAX_DEPTH {
        return write_value(lua, out, v, depth);
    }
    let Value::Table(t) = v else {
        if unchanged(v, like) {
            out.push_str(like.get());
            return Ok(());
        }
        return write_value(lua, out, v, depth);
    };
    let is_array_mt = t.metatable().is_some_and(|m| m == lua.array_metatable());
    match like.get().as_bytes().first() {
        Some(b'{') if !is_array_mt => {
            let Ok(orig) =
                serde_json::from_str::<indexmap::IndexMap<String, Box<RawValue>>>(like.get())
            else {
                return write_value(lua, out, v, depth);
            };
            let mut entries: Vec<(String, Value)> = Vec::new();
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair.map_err(|e| e.to_string())?;
                match k {
                    Value::String(s) => entries.push((
                        s.to_str()
                            .map_err(|_| "a key that is not valid UTF-8".to_string())?
                            .to_string(),
                        v,
                    )),
                    // An array-like table replacing an object: the plain writer decides.
                    _ => return write_value(lua, out, &Value::Table(t.clone()), depth),
                }
            }
            let mut added: Vec<&(String, Value)> = entries
                .iter()
                .filter(|(k, _)| !orig.contains_key(k))
                .collect();
            added.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            let mut first = true;
            for (k, raw) in &orig {
                let Some((_, v)) = entries.iter().find(|(e, _)| e == k) else {
                    continue;
                };
                push_key(out, &mut first, k);
                write_like(lua, out, v, raw, depth + 1)?;
            }
            for (k, v) in added {
                push_key(out, &mut first, k);
                write_value(lua, out, v, depth + 1)?;
            }
            out.push('}');
            Ok(())
        }
        Some(b'[') => {
            let Ok(orig) = serde_json::from_str::<Vec<Box<RawValue>>>(like.get()) else {
                return write_value(lua, out, v, depth);
            };
            // Element by element against the original, while the table is
            // still a plain array (else the plain writer decides).
            let n = t.raw_len();
            let plain_array = t.pairs::<Value, Value>().all(|p| {
                p.is_ok_and(|(k, _)| matches!(k, Value::Integer(i) if i >= 1 && i as usize <= n))
            });
            if !plain_array {
                return write_value(lua, out, v, depth);
            }
            out.push('[');
            for i in 1..=n {
                if i > 1 {
                    out.push(',');
                }
                let item: Value = t.raw_get(i).map_err(|e| e.to_string())?;
                match orig.get(i - 1) {
                    Some(raw) if !item.is_nil() => write_like(lua, out, &item, raw, depth + 1)?,
                    _ => write_value(lua, out, &item, depth + 1)?,
                }
            }
            out.push(']');
            Ok(())
        }
        _ => write_value(lua, out, v, depth),
    }
}

/// Whether a Lua value is still what `raw` became, nested objects and
/// arrays included, so the original text is written back as it was.
fn unchanged_whole(lua: &Lua, lua_value: &Value, raw: &RawValue) -> bool {
    match (lua_value, raw.get().as_bytes().first()) {
        (Value::Table(_), Some(b'{' | b'[')) => {
            let (mut now, mut was) = (String::new(), String::new());
            write_json(lua, &mut now, lua_value).is_ok()
                && raw_to_lua(lua, raw).is_ok_and(|v| write_json(lua, &mut was, &v).is_ok())
                && now == was
        }
        _ => unchanged(lua_value, raw),
    }
}

/// Whether a Lua value is what `raw` was turned into, so the original
/// spelling (`12.50`, `1e3`, escapes) can be kept.
pub fn unchanged(lua_value: &Value, raw: &RawValue) -> bool {
    let text = raw.get();
    match lua_value {
        Value::Integer(i) => text.parse::<i64>().ok() == Some(*i),
        Value::Number(f) => {
            text.as_bytes()
                .first()
                .is_some_and(|b| b.is_ascii_digit() || *b == b'-')
                && text.parse::<f64>().ok() == Some(*f)
        }
        Value::String(s) => match text.as_bytes().first() {
            Some(b'"') => crate::assemble::mapping::raw_text(raw)
                .is_some_and(|orig| orig.as_bytes() == s.as_bytes().as_ref()),
            // A long integer handed over as text.
            Some(b) if b.is_ascii_digit() || *b == b'-' => s.as_bytes().as_ref() == text.as_bytes(),
            _ => false,
        },
        Value::Boolean(b) => text == if *b { "true" } else { "false" },
        _ => false,
    }
}
