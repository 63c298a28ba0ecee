//! The column lane of the transform hook: `transform_columns(cols, n, ctx)`
//! sees a chunk as columns, one Lua array of `n` values per field, built
//! only when the script first reads that field (`cols.phone`). A typical
//! transform touches two or three fields, so the other fields never cross
//! into Lua, and the script's loop is plain array work with no table per
//! record.
//!
//! What the script may do:
//! - change values in place (`p[i] = consign.digits_only(p[i])`), or assign
//!   a new array (`cols.x = {...}`) or one value for every record
//!   (`cols.source_tag = "acme"`);
//! - drop record `i` with `ctx.drop(i, reason)`;
//! - remove a field from every record with `ctx.remove(name)`.
//!
//! A `nil` at position `i` removes that field from record `i` (a JSON
//! `null` the script did not touch stays `null`). Values the script left
//! alone keep their original JSON text.

use super::packed::Field;
use super::value;
use mlua::{Function, Lua, Table, Value};
use std::borrow::Cow;

const DRIVER: &str = r#"
local rawget, rawset, setmetatable, xpcall, type, tostring =
  rawget, rawset, setmetatable, xpcall, type, tostring
return function(n, load, ctx, traceback)
  local fn = rawget(_G, "transform_columns")
  local removed, dropped = {}, {}
  local cols = setmetatable({}, { __index = function(t, name)
    if type(name) ~= "string" or removed[name] then return nil end
    local c = load(name)
    rawset(t, name, c)
    return c
  end })
  ctx.n = n
  ctx.drop = function(i, reason)
    if math.type(i) ~= "integer" or i < 1 or i > n then
      error("ctx.drop(" .. tostring(i) .. "): the record index must be an integer from 1 to " .. n, 2)
    end
    dropped[i] = reason ~= nil and tostring(reason) or "dropped by transform_columns (no reason given)"
  end
  ctx.remove = function(name)
    removed[name] = true
    rawset(cols, name, nil)
  end
  local ok, err = xpcall(fn, traceback, cols, n, ctx)
  if not ok then return nil, nil, nil, err end
  return cols, dropped, removed
end
"#;

fn driver(lua: &Lua) -> mlua::Result<Function> {
    let reg = "consign.transform_columns_driver";
    if let Ok(f) = lua.named_registry_value::<Function>(reg) {
        return Ok(f);
    }
    let f: Function = lua
        .load(DRIVER)
        .set_name("=consign-transform-columns-driver")
        .call(())?;
    lua.set_named_registry_value(reg, f.clone())?;
    Ok(f)
}

/// One record's fields, as the transform sees them.
pub type Fields<'a> = [(Cow<'a, str>, Field<'a>)];

/// What the column transform made of one record.
pub enum ColumnOutcome {
    Kept(String),
    Dropped(String),
    Failed(String),
}

/// The field `name` of one record, looked up where the previous record had it first.
fn find<'f, 'a>(fields: &'f Fields<'a>, name: &str, hint: &mut usize) -> Option<&'f Field<'a>> {
    if let Some((k, f)) = fields.get(*hint) {
        if k.as_ref() == name {
            return Some(f);
        }
    }
    let at = fields.iter().position(|(k, _)| k.as_ref() == name)?;
    *hint = at;
    Some(&fields[at].1)
}

fn column(lua: &Lua, records: &[&Fields<'_>], name: &str) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(records.len(), 0)?;
    let mut hint = 0;
    for (i, fields) in records.iter().enumerate() {
        match find(fields, name, &mut hint) {
            Some(Field::Raw(r)) => t.raw_set(i + 1, value::raw_to_lua(lua, r)?)?,
            Some(Field::Text(s)) => t.raw_set(i + 1, s.as_ref())?,
            Some(Field::Missing) | None => {}
        }
    }
    Ok(t)
}

/// A field the script handed back: one value per record (any table is an
/// array of them), or one value for all.
enum Returned {
    PerRecord(Vec<Value>),
    Same(Value),
}

impl Returned {
    fn at(&self, i: usize) -> &Value {
        match self {
            Returned::PerRecord(v) => v.get(i).unwrap_or(&Value::Nil),
            Returned::Same(v) => v,
        }
    }
}

/// Run `transform_columns` over `records` (ids in `ids`): one outcome per
/// record, or the error that ended the whole call.
pub fn run(
    lua: &Lua,
    records: &[&Fields<'_>],
    ids: Table,
    ctx: Table,
    traceback: Function,
) -> mlua::Result<Result<Vec<ColumnOutcome>, String>> {
    let n = records.len();
    ctx.raw_set("ids", ids)?;
    let driver = driver(lua)?;
    let (cols, dropped, removed, whole): (Value, Value, Value, Value) = lua.scope(|scope| {
        let load = scope.create_function(|lua, name: mlua::LuaString| {
            let name = name.to_str()?.to_string();
            column(lua, records, &name)
        })?;
        driver.call((n, load, ctx, traceback))
    })?;
    let (Value::Table(cols), Value::Table(dropped), Value::Table(removed)) =
        (cols, dropped, removed)
    else {
        return Ok(Err(match whole {
            Value::String(e) => e.to_string_lossy(),
            _ => "transform_columns driver returned nothing".into(),
        }));
    };

    // Few entries each: a list searched in order beats hashing per field.
    let mut gone: Vec<String> = Vec::new();
    for pair in removed.pairs::<mlua::LuaString, Value>() {
        gone.push(pair?.0.to_string_lossy());
    }
    let mut returned: Vec<(String, Returned)> = Vec::new();
    for pair in cols.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let name = match &k {
            Value::String(s) => match s.to_str() {
                Ok(s) => s.to_string(),
                Err(_) => return Ok(Err("a field name that is not valid UTF-8".into())),
            },
            other => {
                return Ok(Err(format!(
                    "cols keys must be field names (strings), not a {}",
                    other.type_name()
                )))
            }
        };
        let r = match v {
            Value::Table(t) => {
                if t.raw_len() > n {
                    return Ok(Err(format!(
                        "cols.{name} has {} entries for {n} records (entry i is record i's value)",
                        t.raw_len()
                    )));
                }
                let mut vals = Vec::with_capacity(n);
                for i in 1..=n {
                    vals.push(t.raw_get::<Value>(i)?);
                }
                Returned::PerRecord(vals)
            }
            other => Returned::Same(other),
        };
        returned.push((name, r));
    }
    let mut added: Vec<&(String, Returned)> =
        returned.iter().filter(|(k, _)| !gone.contains(k)).collect();
    added.sort_by(|a, b| a.0.cmp(&b.0));

    let mut out = Vec::with_capacity(n);
    for (i, fields) in records.iter().enumerate() {
        if let Some(why) = dropped.raw_get::<Option<mlua::LuaString>>(i + 1)? {
            out.push(ColumnOutcome::Dropped(why.to_string_lossy()));
            continue;
        }
        let mut json = String::with_capacity(256);
        out.push(
            match write(lua, &mut json, fields, &returned, &gone, &added, i) {
                Ok(()) => ColumnOutcome::Kept(json),
                Err(e) => ColumnOutcome::Failed(e),
            },
        );
    }
    Ok(Ok(out))
}

/// Record `i` as JSON: its fields in order (untouched values keep their
/// text), then the fields the script added, sorted by name.
fn write(
    lua: &Lua,
    out: &mut String,
    fields: &Fields<'_>,
    returned: &[(String, Returned)],
    gone: &[String],
    added: &[&(String, Returned)],
    i: usize,
) -> Result<(), String> {
    out.push('{');
    let mut first = true;
    let mut key = |out: &mut String, k: &str| value::push_key(out, &mut first, k);
    for (k, f) in fields {
        if gone.iter().any(|g| g == k) {
            continue;
        }
        let Some((_, r)) = returned.iter().find(|(name, _)| name == k) else {
            match f {
                Field::Raw(raw) => {
                    key(out, k);
                    out.push_str(raw.get());
                }
                Field::Text(t) => {
                    key(out, k);
                    value::push_json_string(out, t);
                }
                Field::Missing => {}
            }
            continue;
        };
        let v = r.at(i);
        let raw = match f {
            Field::Raw(r) => Some(*r),
            _ => None,
        };
        if v.is_nil() {
            if raw.is_some_and(|r| r.get() == "null") {
                key(out, k);
                out.push_str("null");
            }
            continue;
        }
        key(out, k);
        match raw {
            Some(r) => {
                value::write_json_like(lua, out, v, r).map_err(|e| format!("field {k:?}: {e}"))?
            }
            _ => value::write_json(lua, out, v).map_err(|e| format!("field {k:?}: {e}"))?,
        }
    }
    for (k, r) in added.iter().copied() {
        if fields.iter().any(|(name, _)| name == k) {
            continue;
        }
        let v = r.at(i);
        if v.is_nil() {
            continue;
        }
        key(out, k);
        value::write_json(lua, out, v).map_err(|e| format!("field {k:?}: {e}"))?;
    }
    out.push('}');
    Ok(())
}
