//! The fast lane of the transform hook: a chunk of flat records crosses
//! into Lua as **one** packed string and comes back as one, so the cost per
//! record is Lua's own work, not hundreds of Rust↔Lua API calls.
//!
//! In: for each record `s2` (a `string.unpack` format for the record) then
//! the values it describes: pairs of `I4` (key index << 3 | tag) and the
//! value (tag 0 string `s4`, 1 integer `j`, 2 float `n`, 3 true / 4 false /
//! 5 null as one ignored byte `B`). The driver builds each record's table
//! with one `string.unpack` call.
//!
//! Out: per record a status byte — `K` kept (then `I4` count and the fields
//! that changed, were added or removed: `I4` key index, or `0xFFFFFFFF`
//! and `s4` name for a key not seen in the chunk; a tag; the value; tag 5 =
//! removed, 6 = `consign.null`), `D` dropped (`s4` reason), `E` error (`s4`
//! message), `R` not a table (`s4` type name), `C` a value the lane cannot
//! carry (nested table, odd key): that record's table is returned aside and
//! written by the general path. Fields the script left alone keep their
//! original JSON text.
//!
//! Records with nested objects or arrays, or too many fields, do not take
//! this lane (the caller uses the general one).

use super::value;
use mlua::{Function, Lua, LuaSerdeExt, Table, Value};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;

/// `string.unpack` returns every value of a record at once: keep that bounded.
const MAX_FIELDS: usize = 2000;
const NEW_KEY: u32 = u32::MAX;

const DRIVER: &str = r#"
local unpack, pack, concat, type, pairs, mtype, tostring, rawget, xpcall =
  string.unpack, string.pack, table.concat, type, pairs, math.type, tostring, rawget, xpcall
--CHECK_BATCH--
return function(buf, keys, n, ids, ctx, traceback, spent, null)
  local kidx, mark = {}, {}
  for i = 1, #keys do kidx[keys[i]] = i end
  local parts, np, aside = {}, 0, {}
  local pos = 1

  local function decode()
    local fmt
    fmt, pos = unpack("<s2", buf, pos)
    local vals = { unpack(fmt, buf, pos) }
    local m = #vals
    pos = vals[m]
    local r = {}
    for j = 1, m - 1, 2 do
      local kt = vals[j]
      local tag = kt & 7
      if tag >= 3 then
        local v
        if tag == 3 then v = true elseif tag == 4 then v = false end
        vals[j + 1] = v
      end
      r[keys[kt >> 3]] = vals[j + 1]
    end
    return r, vals, m
  end

  -- Append key `head` and value `v`; false when `v` cannot be carried.
  local function put(head, v)
    local tv = type(v)
    local enc
    if tv == "string" then enc = pack("<Bs4", 0, v)
    elseif tv == "number" then
      if mtype(v) == "integer" then enc = pack("<Bj", 1, v) else enc = pack("<Bn", 2, v) end
    elseif tv == "boolean" then enc = v and "\3" or "\4"
    elseif v == nil then enc = "\5"
    elseif v == null then enc = "\6"
    else return false end
    np = np + 1; parts[np] = head
    np = np + 1; parts[np] = enc
    return true
  end

  local function encode(i, r, vals, m)
    local start = np
    np = np + 1; parts[np] = "K"
    np = np + 1
    local count_at = np
    local count = 0
    for j = 1, m - 1, 2 do
      local ki = vals[j] >> 3
      mark[ki] = i
      local v, ov = r[keys[ki]], vals[j + 1]
      if v ~= ov or mtype(v) ~= mtype(ov) then
        if not put(pack("<I4", ki), v) then np = start; return false end
        count = count + 1
      end
    end
    for k, v in pairs(r) do
      local ki = kidx[k]
      if not ki or mark[ki] ~= i then
        if type(k) ~= "string" then np = start; return false end
        if not put(ki and pack("<I4", ki) or pack("<I4s4", 0xFFFFFFFF, k), v) then np = start; return false end
        count = count + 1
      end
    end
    parts[count_at] = pack("<I4", count)
    return true
  end

  local function result(i, r, vals, m, reason, default_reason)
    if type(r) == "table" then
      if not encode(i, r, vals, m) then
        aside[i] = r
        np = np + 1; parts[np] = "C"
      end
    elseif r then
      np = np + 1; parts[np] = pack("<Bs4", 82, type(r))
    else
      np = np + 1; parts[np] = pack("<Bs4", 68, reason and tostring(reason) or default_reason)
    end
  end

  local batch = rawget(_G, "transform_batch")
  if batch then
    local records, meta, sizes = {}, {}, {}
    for i = 1, n do records[i], meta[i], sizes[i] = decode() end
    ctx.ids = ids
    local pos = {}
    for i = 1, n do pos[records[i]] = i end
    local ok, res = xpcall(batch, traceback, records, ctx)
    if not ok then return nil, nil, res end
    res = res or records
    local bad = check_batch(res, pos, n)
    if bad then return nil, nil, bad end
    for i = 1, n do
      result(i, res[i], meta[i], sizes[i], ctx.reasons[i], "dropped by transform_batch")
    end
    return concat(parts, "", 1, np), aside
  end
  local fn = rawget(_G, "transform")
  for i = 1, n do
    local r, vals, m = decode()
    ctx.record_id = ids[i]
    local ok, out, reason = xpcall(fn, traceback, r, ctx)
    if not ok then
      -- A broken budget ends the call: the host retries records one by one.
      if spent() then error(out, 0) end
      np = np + 1; parts[np] = pack("<Bs4", 69, tostring(out))
    else
      result(i, out, vals, m, reason, "dropped by transform (no reason given)")
    end
  end
  return concat(parts, "", 1, np), aside
end
"#;

/// A record field as the transform sees it.
pub enum Field<'a> {
    Raw(&'a RawValue),
    Text(Cow<'a, str>),
    Missing,
}

/// The chunk packed for the driver, or `None` when a record has a value
/// this lane does not carry.
pub struct Packed {
    pub keys: Vec<String>,
    pub buf: Vec<u8>,
}

fn push_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// Pack `records` (each a list of fields), or `None` for the general lane.
pub fn pack<'a, I>(records: I) -> Option<Packed>
where
    I: IntoIterator<Item = &'a [(Cow<'a, str>, Field<'a>)]>,
{
    let mut keys: Vec<String> = Vec::new();
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut buf = Vec::new();
    let mut fmt = String::new();
    let mut vals = Vec::new();
    for fields in records {
        if fields.len() > MAX_FIELDS {
            return None;
        }
        fmt.clear();
        fmt.push('<');
        vals.clear();
        for (k, f) in fields {
            let ki = match index.get(k.as_ref()) {
                Some(i) => *i,
                None => {
                    keys.push(k.to_string());
                    let i = keys.len() as u32;
                    if i >= (1 << 28) {
                        return None;
                    }
                    index.insert(k.to_string(), i);
                    i
                }
            };
            let (tag, payload): (u32, Payload<'_>) = match f {
                Field::Missing => continue,
                Field::Text(t) => (0, Payload::Str(t.as_bytes())),
                Field::Raw(r) => {
                    let text = r.get();
                    match text.as_bytes().first() {
                        Some(b'"') => match crate::assemble::mapping::raw_text(r) {
                            Some(Cow::Borrowed(s)) => (0, Payload::Str(s.as_bytes())),
                            Some(Cow::Owned(s)) => (0, Payload::Owned(s.into_bytes())),
                            None => (5, Payload::Byte),
                        },
                        Some(b't') => (3, Payload::Byte),
                        Some(b'f') => (4, Payload::Byte),
                        Some(b'n') | None => (5, Payload::Byte),
                        Some(b'{') | Some(b'[') => return None,
                        Some(_) => {
                            if let Ok(i) = text.parse::<i64>() {
                                (1, Payload::Int(i))
                            } else if !text.contains(['.', 'e', 'E']) {
                                // An integer too long for 64 bits: exact, as text.
                                (0, Payload::Str(text.as_bytes()))
                            } else {
                                match text.parse::<f64>() {
                                    Ok(x) => (2, Payload::Float(x)),
                                    Err(_) => (0, Payload::Str(text.as_bytes())),
                                }
                            }
                        }
                    }
                }
            };
            fmt.push_str("I4");
            push_u32(&mut vals, (ki << 3) | tag);
            match payload {
                Payload::Str(s) => {
                    fmt.push_str("s4");
                    push_u32(&mut vals, u32::try_from(s.len()).ok()?);
                    vals.extend_from_slice(s);
                }
                Payload::Owned(s) => {
                    fmt.push_str("s4");
                    push_u32(&mut vals, u32::try_from(s.len()).ok()?);
                    vals.extend_from_slice(&s);
                }
                Payload::Int(i) => {
                    fmt.push('j');
                    vals.extend_from_slice(&i.to_le_bytes());
                }
                Payload::Float(x) => {
                    fmt.push('n');
                    vals.extend_from_slice(&x.to_le_bytes());
                }
                Payload::Byte => {
                    fmt.push('B');
                    vals.push(0);
                }
            }
        }
        buf.extend_from_slice(&u16::try_from(fmt.len()).ok()?.to_le_bytes());
        buf.extend_from_slice(fmt.as_bytes());
        buf.extend_from_slice(&vals);
    }
    Some(Packed { keys, buf })
}

enum Payload<'a> {
    Str(&'a [u8]),
    Owned(Vec<u8>),
    Int(i64),
    Float(f64),
    Byte,
}

pub fn driver(lua: &Lua) -> mlua::Result<Function> {
    let reg = "consign.transform_packed_driver";
    if let Ok(f) = lua.named_registry_value::<Function>(reg) {
        return Ok(f);
    }
    let f: Function = lua
        .load(DRIVER.replace("--CHECK_BATCH--", super::transform::CHECK_BATCH))
        .set_name("=consign-transform-driver")
        .call(())?;
    lua.set_named_registry_value(reg, f.clone())?;
    Ok(f)
}

/// One record's answer from the driver.
pub enum Answer<'b> {
    /// Changed, added (`None` key index = new name) and removed fields.
    Kept(Vec<(KeyRef<'b>, NewValue<'b>)>),
    Dropped(String),
    Error(String),
    NotATable(String),
    /// Written by the general path from the table set aside.
    Aside,
}

pub enum KeyRef<'b> {
    Index(u32),
    Name(&'b str),
}

pub enum NewValue<'b> {
    Str(&'b [u8]),
    Int(i64),
    Float(f64),
    Bool(bool),
    Removed,
    Null,
}

struct Reader<'b> {
    b: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let Some(end) = end else {
            return Err("the transform driver's answer is cut short".into());
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<[u8; 8], String> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn s4(&mut self) -> Result<&'b [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// Split the driver's answer into one [`Answer`] per record.
pub fn answers(b: &[u8], n: usize) -> Result<Vec<Answer<'_>>, String> {
    let mut r = Reader { b, at: 0 };
    let mut out = Vec::with_capacity(n);
    let text = |s: &[u8]| String::from_utf8_lossy(s).into_owned();
    for _ in 0..n {
        out.push(match r.u8()? {
            b'K' => {
                let count = r.u32()? as usize;
                let mut changes = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    let key = match r.u32()? {
                        NEW_KEY => KeyRef::Name(
                            std::str::from_utf8(r.s4()?)
                                .map_err(|_| "a field name that is not valid UTF-8".to_string())?,
                        ),
                        i => KeyRef::Index(i),
                    };
                    let v = match r.u8()? {
                        0 => NewValue::Str(r.s4()?),
                        1 => NewValue::Int(i64::from_le_bytes(r.u64()?)),
                        2 => NewValue::Float(f64::from_le_bytes(r.u64()?)),
                        3 => NewValue::Bool(true),
                        4 => NewValue::Bool(false),
                        5 => NewValue::Removed,
                        6 => NewValue::Null,
                        t => {
                            return Err(format!("unknown value tag {t} from the transform driver"))
                        }
                    };
                    changes.push((key, v));
                }
                Answer::Kept(changes)
            }
            b'D' => Answer::Dropped(text(r.s4()?)),
            b'E' => Answer::Error(text(r.s4()?)),
            b'R' => Answer::NotATable(text(r.s4()?)),
            b'C' => Answer::Aside,
            s => return Err(format!("unknown status {s} from the transform driver")),
        });
    }
    if r.at != b.len() {
        return Err("the transform driver answered more than it was asked".into());
    }
    Ok(out)
}

/// The record as JSON: original keys in their order (untouched values keep
/// their exact text), then added keys sorted by name.
pub fn write(
    out: &mut String,
    fields: &[(Cow<'_, str>, Field<'_>)],
    keys: &[String],
    changes: &[(KeyRef<'_>, NewValue<'_>)],
) -> Result<(), String> {
    let name = |k: &KeyRef<'_>| -> Result<String, String> {
        match k {
            KeyRef::Name(n) => Ok((*n).to_string()),
            KeyRef::Index(i) => keys
                .get((*i as usize).wrapping_sub(1))
                .cloned()
                .ok_or_else(|| format!("key index {i} out of range")),
        }
    };
    let mut changed: HashMap<String, &NewValue<'_>> = HashMap::with_capacity(changes.len());
    for (k, v) in changes {
        changed.insert(name(k)?, v);
    }
    out.push('{');
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
    };
    for (k, f) in fields {
        match changed.remove(k.as_ref()) {
            Some(NewValue::Removed) => {}
            Some(v) => {
                sep(out);
                value::push_json_string(out, k);
                out.push(':');
                write_value(out, v).map_err(|e| format!("field {k:?}: {e}"))?;
            }
            None => match f {
                Field::Raw(r) => {
                    sep(out);
                    value::push_json_string(out, k);
                    out.push(':');
                    out.push_str(r.get());
                }
                Field::Text(t) => {
                    sep(out);
                    value::push_json_string(out, k);
                    out.push(':');
                    value::push_json_string(out, t);
                }
                Field::Missing => {}
            },
        }
    }
    let mut extra: Vec<(String, &NewValue<'_>)> = changed
        .into_iter()
        .filter(|(_, v)| !matches!(v, NewValue::Removed))
        .collect();
    extra.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in extra {
        sep(out);
        value::push_json_string(out, &k);
        out.push(':');
        write_value(out, v).map_err(|e| format!("field {k:?}: {e}"))?;
    }
    out.push('}');
    Ok(())
}

fn write_value(out: &mut String, v: &NewValue<'_>) -> Result<(), String> {
    match v {
        NewValue::Str(s) => {
            let s = std::str::from_utf8(s)
                .map_err(|_| "a string that is not valid UTF-8".to_string())?;
            value::push_json_string(out, s);
        }
        NewValue::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
        NewValue::Float(f) => value::write_float(out, *f)?,
        NewValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        NewValue::Null | NewValue::Removed => out.push_str("null"),
    }
    Ok(())
}

/// The driver's returns: the packed answer, the tables set aside, or the
/// error that ended the whole call.
pub fn call(
    lua: &Lua,
    packed: &Packed,
    n: usize,
    ids: Table,
    ctx: Table,
    traceback: Function,
    spent: Function,
) -> mlua::Result<Result<(mlua::LuaString, Table), String>> {
    let keys = lua.create_sequence_from(packed.keys.iter().map(String::as_str))?;
    let buf = lua.create_string(&packed.buf)?;
    let (answer, aside, whole): (Value, Value, Value) =
        driver(lua)?.call((buf, keys, n, ids, ctx, traceback, spent, lua.null()))?;
    match (answer, aside, whole) {
        (Value::String(a), Value::Table(t), _) => Ok(Ok((a, t))),
        (_, _, Value::String(e)) => Ok(Err(e.to_string_lossy())),
        _ => Ok(Err("transform driver returned nothing".into())),
    }
}
