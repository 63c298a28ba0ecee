//! The transform hook in assembly: records go to Lua `batch_size` at a time
//! (one Rust→Lua crossing per chunk; a per-record `transform` is driven by a
//! loop inside Lua), come back as JSON text, and flow on to the encoder.
//! Dropped and failed records become the batch's rejected list with the
//! reason (and the script line); with `on_error = "fail_batch"` the first
//! error fails the batch instead.

use super::columns;
use super::packed::{self, Field};
use super::{value, Script, ScriptError};
use crate::assemble::mapping::{Column, JsonValue, RawRecord};
use crate::assemble::RecordSource;
use crate::config::{DeliveryScripts, OnError, ScriptLimits, TransformMode};
use crate::store::Rejection;
use mlua::{Function, Lua, Table, Value};
use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

/// The Lua side: runs the user's `transform_batch` once, or `transform`
/// for each record under `xpcall`, and reports results, drop reasons and
/// errors per position.
const DRIVER: &str = r#"
local rawget, xpcall = rawget, xpcall
--CHECK_BATCH--
return function(records, ids, n, ctx, traceback, spent)
  local out, why, errs = {}, {}, {}
  local batch = rawget(_G, "transform_batch")
  if batch then
    ctx.ids = ids
    local pos = {}
    for i = 1, n do pos[records[i]] = i end
    local ok, res = xpcall(batch, traceback, records, ctx)
    if not ok then return nil, nil, nil, res end
    res = res or records
    local bad = check_batch(res, pos, n)
    if bad then return nil, nil, nil, bad end
    for i = 1, n do
      local r = res[i]
      if r then out[i] = r else out[i] = false; why[i] = ctx.reasons[i] or "dropped by transform_batch" end
    end
    return out, why, errs
  end
  local fn = rawget(_G, "transform")
  for i = 1, n do
    ctx.record_id = ids[i]
    local ok, r, reason = xpcall(fn, traceback, records[i], ctx)
    if not ok then
      -- A broken budget ends the call: the host retries records one by one.
      if spent() then error(r, 0) end
      out[i] = false; errs[i] = r
    elseif not r then
      out[i] = false; why[i] = reason or "dropped by transform (no reason given)"
    else
      out[i] = r
    end
  end
  return out, why, errs
end
"#;

/// Lua: `check_batch(res, pos, n)` → why `transform_batch`'s result cannot be
/// matched to its records (entry i must be record i's result), or nil.
pub(super) const CHECK_BATCH: &str = r#"
local function check_batch(res, pos, n)
  if type(res) ~= "table" then
    return "transform_batch returned a " .. type(res) .. " (expected the records array, or nothing to keep the records as changed in place)"
  end
  for k, r in pairs(res) do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      return "transform_batch returned an entry at " .. tostring(k) .. ": entry i is record i's result (nil or false drops it), so the array holds at most " .. n .. " entries"
    end
    local j = type(r) == "table" and pos[r]
    if j and j ~= k then
      return "transform_batch returned record " .. j .. " at position " .. k .. ": results are matched to records by position (entry i is record i's result)"
    end
  end
end
"#;

/// What a transform needs for one batch.
pub struct TransformStep {
    script: Arc<Script>,
    limits: ScriptLimits,
    on_error: OnError,
    batch_size: usize,
    /// After-mapping mode: the layout's columns; empty = the record as it is.
    columns: Vec<Column>,
    delivery: String,
    batch_id: String,
    /// Whether the script defines `transform_columns` (asked once).
    column_lane: std::sync::OnceLock<bool>,
}

impl TransformStep {
    pub fn new(
        script: Arc<Script>,
        cfg: &DeliveryScripts,
        limits: ScriptLimits,
        columns: Vec<Column>,
        delivery: &str,
        batch_id: &str,
    ) -> TransformStep {
        TransformStep {
            script,
            limits,
            on_error: cfg.on_error,
            batch_size: cfg.batch_size.max(1),
            columns: if cfg.mode == TransformMode::AfterMapping {
                columns
            } else {
                Vec::new()
            },
            delivery: delivery.to_string(),
            batch_id: batch_id.to_string(),
            column_lane: std::sync::OnceLock::new(),
        }
    }

    pub fn script(&self) -> &Arc<Script> {
        &self.script
    }

    /// Transform `chunk`; kept records go to `emit`, the others to `rejected`.
    fn chunk(
        &self,
        chunk: &[(i64, String)],
        rejected: &mut Vec<Rejection>,
        emit: &mut dyn FnMut(i64, &str) -> Result<(), String>,
    ) -> Result<(), String> {
        match self.run(chunk) {
            Ok(results) => {
                for ((id, _), r) in chunk.iter().zip(results) {
                    match r {
                        Outcome::Kept(json) => emit(*id, &json)?,
                        Outcome::Dropped(why) => rejected.push(Rejection {
                            record: *id,
                            reason: format!("dropped by transform: {why}"),
                        }),
                        Outcome::Failed(err) => {
                            if self.on_error == OnError::FailBatch {
                                return Err(format!("record {id}: transform failed: {err}"));
                            }
                            rejected.push(Rejection {
                                record: *id,
                                reason: format!("transform error: {err}"),
                            });
                        }
                    }
                }
                Ok(())
            }
            // The whole call failed (a limit, or transform_batch raised).
            Err(e) => {
                if chunk.len() > 1 && !self.has_batch_fn() {
                    // Find the record(s) at fault: one at a time.
                    for one in chunk.chunks(1) {
                        self.chunk(one, rejected, emit)?;
                    }
                    return Ok(());
                }
                let msg = match &e {
                    ScriptError::Runtime { message, .. } => first_line(message),
                    other => other.to_string(),
                };
                if self.on_error == OnError::FailBatch {
                    return Err(format!("transform failed: {msg}"));
                }
                for (id, _) in chunk {
                    rejected.push(Rejection {
                        record: *id,
                        reason: format!("transform error: {msg}"),
                    });
                }
                Ok(())
            }
        }
    }

    fn has_batch_fn(&self) -> bool {
        self.defines("transform_batch")
    }

    fn defines(&self, name: &str) -> bool {
        self.script
            .with_vm(&self.limits, |lua| {
                Ok(matches!(
                    lua.globals().raw_get::<Value>(name)?,
                    Value::Function(_)
                ))
            })
            .unwrap_or(false)
    }

    /// One Lua call for the whole chunk: the packed lane when every record
    /// is flat (one string in, one out), else tables built field by field.
    fn run(&self, chunk: &[(i64, String)]) -> Result<Vec<Outcome>, ScriptError> {
        let views: Vec<Option<View<'_>>> = chunk
            .iter()
            .map(|(_, payload)| View::new(payload, &self.columns).ok())
            .collect();
        if *self
            .column_lane
            .get_or_init(|| self.defines("transform_columns"))
        {
            return self.run_columns(chunk, &views);
        }
        if views.iter().all(Option::is_some) {
            let flat = packed::pack(views.iter().flatten().map(|v| v.fields.as_slice()));
            if let Some(p) = flat {
                return self.run_packed(chunk, &views, &p);
            }
        }
        self.run_tables(chunk, &views)
    }

    fn run_packed(
        &self,
        chunk: &[(i64, String)],
        views: &[Option<View<'_>>],
        p: &packed::Packed,
    ) -> Result<Vec<Outcome>, ScriptError> {
        self.script.with_vm(&self.limits, |lua| {
            let n = chunk.len();
            let ids = lua.create_sequence_from(chunk.iter().map(|(id, _)| *id))?;
            let ctx = self.context(lua)?;
            let spent: Function = lua.named_registry_value(super::vm::SPENT)?;
            let (answer, aside) =
                match packed::call(lua, p, n, ids, ctx, traceback(lua)?, spent)? {
                    Ok(x) => x,
                    Err(e) => return Err(mlua::Error::runtime(e)),
                };
            let bytes = answer.as_bytes();
            let answers = packed::answers(&bytes, n).map_err(mlua::Error::runtime)?;
            let mut results = Vec::with_capacity(n);
            for (i, (a, view)) in answers.into_iter().zip(views.iter().flatten()).enumerate() {
                results.push(match a {
                    packed::Answer::Kept(changes) => {
                        let mut json = String::with_capacity(chunk[i].1.len() + 16);
                        match packed::write(&mut json, &view.fields, &p.keys, &changes) {
                            Ok(()) => Outcome::Kept(json),
                            Err(e) => Outcome::Failed(format!(
                                "{}: the returned record cannot be written: {e}",
                                self.script.path
                            )),
                        }
                    }
                    packed::Answer::Aside => {
                        let t: Table = aside.raw_get(i + 1)?;
                        self.written(lua, view, &t, chunk[i].1.len())
                    }
                    packed::Answer::Dropped(why) => Outcome::Dropped(why),
                    packed::Answer::Error(e) => {
                        tracing::debug!(script = %self.script.path, record = chunk[i].0, "transform error: {e}");
                        Outcome::Failed(first_line(&e))
                    }
                    packed::Answer::NotATable(t) => Outcome::Failed(self.not_a_table(&t)),
                });
            }
            Ok(results)
        })
    }

    /// The column lane: the chunk as one array per field the script reads.
    fn run_columns(
        &self,
        chunk: &[(i64, String)],
        views: &[Option<View<'_>>],
    ) -> Result<Vec<Outcome>, ScriptError> {
        // Records that are not JSON objects never reach the script.
        let good: Vec<&columns::Fields<'_>> = views
            .iter()
            .flatten()
            .map(|v| v.fields.as_slice())
            .collect();
        let good_ids: Vec<i64> = chunk
            .iter()
            .zip(views)
            .filter(|(_, v)| v.is_some())
            .map(|((id, _), _)| *id)
            .collect();
        let answers = self.script.with_vm(&self.limits, |lua| {
            let ids = lua.create_sequence_from(good_ids.iter().copied())?;
            let ctx = self.context(lua)?;
            match columns::run(lua, &good, ids, ctx, traceback(lua)?)? {
                Ok(a) => Ok(a),
                Err(e) => Err(mlua::Error::runtime(e)),
            }
        })?;
        let mut answers = answers.into_iter();
        let mut results = Vec::with_capacity(chunk.len());
        for view in views {
            if view.is_none() {
                results.push(Outcome::Failed(
                    "the stored record is not a JSON object".into(),
                ));
                continue;
            }
            results.push(match answers.next() {
                Some(columns::ColumnOutcome::Kept(json)) => Outcome::Kept(json),
                Some(columns::ColumnOutcome::Dropped(why)) => Outcome::Dropped(why),
                Some(columns::ColumnOutcome::Failed(e)) => Outcome::Failed(format!(
                    "{}: the returned record cannot be written: {e}",
                    self.script.path
                )),
                None => Outcome::Failed("transform_columns gave no answer".into()),
            });
        }
        Ok(results)
    }

    fn context(&self, lua: &Lua) -> mlua::Result<Table> {
        let ctx = lua.create_table()?;
        ctx.raw_set("delivery", self.delivery.as_str())?;
        ctx.raw_set("batch_id", self.batch_id.as_str())?;
        ctx.raw_set("reasons", lua.create_table()?)?;
        Ok(ctx)
    }

    fn written(&self, lua: &Lua, view: &View<'_>, t: &Table, size: usize) -> Outcome {
        let mut json = String::with_capacity(size + 16);
        match view.write(lua, &mut json, t) {
            Ok(()) => Outcome::Kept(json),
            Err(e) => Outcome::Failed(format!(
                "{}: the returned record cannot be written: {e}",
                self.script.path
            )),
        }
    }

    fn not_a_table(&self, type_name: &str) -> String {
        format!(
            "{}: transform returned a {type_name} (expected the record table, or nil and a reason to drop it)",
            self.script.path
        )
    }

    /// The general lane: a Lua table per record, built and read back field by field.
    fn run_tables(
        &self,
        chunk: &[(i64, String)],
        views: &[Option<View<'_>>],
    ) -> Result<Vec<Outcome>, ScriptError> {
        self.script.with_vm(&self.limits, |lua| {
            let driver = driver(lua)?;
            let n = chunk.len();
            let records = lua.create_table_with_capacity(n, 0)?;
            let ids = lua.create_table_with_capacity(n, 0)?;
            for (i, ((id, _), view)) in chunk.iter().zip(views).enumerate() {
                ids.raw_set(i + 1, *id)?;
                match view {
                    Some(view) => records.raw_set(i + 1, view.to_lua(lua)?)?,
                    None => records.raw_set(i + 1, false)?,
                }
            }
            let ctx = self.context(lua)?;
            let spent: Function = lua.named_registry_value(super::vm::SPENT)?;
            let (out, why, errs, whole): (Option<Table>, Option<Table>, Option<Table>, Value) =
                driver.call((records, ids, n, ctx, traceback(lua)?, spent))?;
            if let Value::String(e) = whole {
                return Err(mlua::Error::runtime(e.to_string_lossy()));
            }
            let (Some(out), Some(why), Some(errs)) = (out, why, errs) else {
                return Err(mlua::Error::runtime("transform driver returned nothing"));
            };
            let mut results = Vec::with_capacity(n);
            for (i, view) in views.iter().enumerate() {
                let Some(view) = view else {
                    results.push(Outcome::Failed("the stored record is not a JSON object".into()));
                    continue;
                };
                if let Some(e) = errs.raw_get::<Option<mlua::LuaString>>(i + 1)? {
                    let e = e.to_string_lossy();
                    tracing::debug!(script = %self.script.path, record = chunk[i].0, "transform error: {e}");
                    results.push(Outcome::Failed(first_line(&e)));
                    continue;
                }
                match out.raw_get::<Value>(i + 1)? {
                    Value::Table(t) => results.push(self.written(lua, view, &t, chunk[i].1.len())),
                    Value::Boolean(false) | Value::Nil => {
                        let reason = match why.raw_get::<Value>(i + 1)? {
                            Value::String(s) => s.to_string_lossy(),
                            Value::Nil => "no reason given".into(),
                            other => format!("{other:?}"),
                        };
                        results.push(Outcome::Dropped(reason));
                    }
                    other => results.push(Outcome::Failed(self.not_a_table(match other {
                        Value::Integer(_) => "number",
                        other => other.type_name(),
                    }))),
                }
            }
            Ok(results)
        })
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// The message handler of `xpcall`: the error with the script's traceback.
fn traceback(lua: &Lua) -> mlua::Result<Function> {
    lua.create_function(|lua, msg: Value| {
        let text = match &msg {
            Value::String(s) => s.to_string_lossy(),
            Value::Error(e) => super::clean(e),
            Value::Nil => "nil".to_string(),
            other => format!("error object of type {}", other.type_name()),
        };
        Ok(lua.traceback(Some(&text), 1)?.to_string_lossy())
    })
}

fn driver(lua: &Lua) -> mlua::Result<Function> {
    let reg = "consign.transform_driver";
    if let Ok(f) = lua.named_registry_value::<Function>(reg) {
        return Ok(f);
    }
    let f: Function = lua
        .load(DRIVER.replace("--CHECK_BATCH--", CHECK_BATCH))
        .set_name("=consign-transform-driver")
        .call(())?;
    lua.set_named_registry_value(reg, f.clone())?;
    Ok(f)
}

enum Outcome {
    Kept(String),
    Dropped(String),
    Failed(String),
}

/// A record as the script sees it: (key, original raw JSON if any, value).
struct View<'a> {
    fields: Vec<(Cow<'a, str>, Field<'a>)>,
}

impl<'a> View<'a> {
    fn new(payload: &'a str, columns: &'a [Column]) -> Result<View<'a>, serde_json::Error> {
        let rec = RawRecord::parse(payload)?;
        let fields = if columns.is_empty() {
            rec.into_entries()
                .into_iter()
                .map(|(k, v)| (k, Field::Raw(v)))
                .collect()
        } else {
            columns
                .iter()
                .map(|c| {
                    let f = match c.json_value(&rec) {
                        JsonValue::Raw(r) => Field::Raw(r),
                        JsonValue::Text(t) => Field::Text(t),
                        JsonValue::Missing => Field::Missing,
                    };
                    (Cow::Borrowed(c.name.as_str()), f)
                })
                .collect()
        };
        Ok(View { fields })
    }

    fn to_lua(&self, lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table_with_capacity(0, self.fields.len())?;
        for (k, f) in &self.fields {
            match f {
                Field::Raw(r) => t.raw_set(k.as_ref(), value::raw_to_lua(lua, r)?)?,
                Field::Text(s) => t.raw_set(k.as_ref(), s.as_ref())?,
                Field::Missing => {}
            }
        }
        Ok(t)
    }

    /// The returned table as a JSON object: the original keys first in their
    /// order (values the script left alone keep their exact text), then
    /// keys the script added, sorted.
    fn write(&self, lua: &Lua, out: &mut String, t: &Table) -> Result<(), String> {
        out.push('{');
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
        };
        for (k, f) in &self.fields {
            let v: Value = t.raw_get(k.as_ref()).map_err(|e| e.to_string())?;
            let raw = match f {
                Field::Raw(r) => Some(*r),
                _ => None,
            };
            if v.is_nil() {
                // A null the script did not touch stays null; a removed key goes.
                if raw.is_some_and(|r| r.get() == "null") {
                    sep(out);
                    value::push_json_string(out, k);
                    out.push_str(":null");
                }
                continue;
            }
            sep(out);
            value::push_json_string(out, k);
            out.push(':');
            match raw {
                Some(r) => value::write_json_like(lua, out, &v, r)
                    .map_err(|e| format!("field {k:?}: {e}"))?,
                None => value::write_json(lua, out, &v).map_err(|e| format!("field {k:?}: {e}"))?,
            }
        }
        let mut extra: Vec<(String, Value)> = Vec::new();
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair.map_err(|e| e.to_string())?;
            let key = match &k {
                Value::String(s) => s
                    .to_str()
                    .map_err(|_| "a field name that is not valid UTF-8".to_string())?
                    .to_string(),
                other => {
                    return Err(format!(
                        "field names must be strings, not a {}",
                        other.type_name()
                    ))
                }
            };
            if !self.fields.iter().any(|(f, _)| f.as_ref() == key) {
                extra.push((key, v));
            }
        }
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in extra {
            sep(out);
            value::push_json_string(out, &k);
            out.push(':');
            value::write_json(lua, out, &v).map_err(|e| format!("field {k:?}: {e}"))?;
        }
        out.push('}');
        Ok(())
    }
}

/// A record source seen through the transform.
pub struct Transformed<'a> {
    inner: &'a dyn RecordSource,
    step: &'a TransformStep,
    rejected: RefCell<Vec<Rejection>>,
}

impl<'a> Transformed<'a> {
    pub fn new(inner: &'a dyn RecordSource, step: &'a TransformStep) -> Transformed<'a> {
        Transformed {
            inner,
            step,
            rejected: RefCell::default(),
        }
    }

    /// Records the transform dropped or failed, in the last pass.
    pub fn rejected(&self) -> Vec<Rejection> {
        self.rejected.borrow().clone()
    }
}

impl RecordSource for Transformed<'_> {
    fn may_drop(&self) -> bool {
        true
    }

    fn each(&self, f: &mut dyn FnMut(i64, &str) -> Result<(), String>) -> Result<(), String> {
        // Assembly may read the source twice (planning parts, then writing).
        self.rejected.borrow_mut().clear();
        let size = self.step.batch_size;
        let mut chunk: Vec<(i64, String)> = Vec::with_capacity(size);
        let mut rejected = Vec::new();
        self.inner.each(&mut |id, payload| {
            chunk.push((id, payload.to_string()));
            if chunk.len() >= size {
                self.step.chunk(&chunk, &mut rejected, f)?;
                chunk.clear();
            }
            Ok(())
        })?;
        if !chunk.is_empty() {
            self.step.chunk(&chunk, &mut rejected, f)?;
        }
        *self.rejected.borrow_mut() = rejected;
        Ok(())
    }
}

/// Run a transform script over sample records (`consign script test`):
/// each record's JSON result, or why it was dropped or failed.
pub fn try_records(step: &TransformStep, records: &[String]) -> Vec<Result<String, String>> {
    let chunk: Vec<(i64, String)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (i as i64 + 1, r.clone()))
        .collect();
    let mut out = Vec::new();
    for one in chunk.chunks(step.batch_size) {
        let mut rejected = Vec::new();
        let mut kept = Vec::new();
        let r = step.chunk(one, &mut rejected, &mut |id, json| {
            kept.push((id, json.to_string()));
            Ok(())
        });
        if let Err(e) = r {
            out.extend(one.iter().map(|_| Err(e.clone())));
            continue;
        }
        for (id, _) in one {
            if let Some((_, j)) = kept.iter().find(|(k, _)| k == id) {
                out.push(Ok(j.clone()));
            } else if let Some(r) = rejected.iter().find(|r| r.record == *id) {
                out.push(Err(r.reason.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod lanes {
    //! The packed lane must give exactly what the general (table) lane gives.
    use super::*;
    use crate::config::TransformMode;

    const SCRIPT: &str = r#"
function transform(r, ctx)
  if r.kind == "drop" then return nil, "dropped: " .. tostring(r.id) end
  if r.kind == "boom" then error("boom at record " .. tostring(r.id)) end
  if r.kind == "number" then return 42 end
  if r.kind == "nested" then r.extra = { a = 1, list = { 1, 2, 3 } } return r end
  r.name = r.name and string.upper(r.name)
  r.removed = nil
  r.zeta, r.alpha = "z", "a"
  if r.kind == "float" then r.n = r.n + 0.5 end
  if r.kind == "null" then r.name = consign.null end
  if r.kind == "bool" then r.flag = not r.flag end
  return r
end
"#;

    fn records() -> Vec<(i64, String)> {
        [
            r#"{"id":1,"kind":"plain","name":"ann \"q\" é ☃","removed":"x","n":12.50,"big":123456789012345678901234,"phone":5551234567,"flag":true,"nul":null}"#,
            r#"{"id":2,"kind":"float","name":"bo","n":1e3,"flag":false}"#,
            r#"{"id":3,"kind":"drop","name":"cy"}"#,
            r#"{"id":4,"kind":"boom"}"#,
            r#"{"id":5,"kind":"number"}"#,
            r#"{"id":6,"kind":"nested","name":"dd"}"#,
            r#"{"id":7,"kind":"null","name":"ee","esc":"tab\tnl\n"}"#,
            r#"{"id":8,"kind":"bool","flag":true,"neg":-7,"exp":2.5E-3}"#,
        ]
        .iter()
        .enumerate()
        .map(|(i, s)| (i as i64 + 1, s.to_string()))
        .collect()
    }

    fn render(o: &[Outcome]) -> Vec<String> {
        o.iter()
            .map(|o| match o {
                Outcome::Kept(j) => format!("kept {j}"),
                Outcome::Dropped(w) => format!("dropped {w}"),
                Outcome::Failed(e) => format!("failed {e}"),
            })
            .collect()
    }

    fn step(dir: &std::path::Path, mode: TransformMode, columns: Vec<Column>) -> TransformStep {
        std::fs::write(dir.join("t.lua"), SCRIPT).expect("write");
        let script = Arc::new(Script::compile(dir, "t.lua", &["transform"], 1).expect("compile"));
        let cfg = DeliveryScripts {
            transform: Some("t.lua".into()),
            mode,
            batch_size: 100,
            ..Default::default()
        };
        TransformStep::new(script, &cfg, ScriptLimits::default(), columns, "d", "b")
    }

    #[test]
    fn packed_and_table_lanes_agree() {
        let dir = tempfile::tempdir().expect("tmp");
        let chunk = records();
        for (mode, columns) in [
            (TransformMode::InsteadOfMapping, Vec::new()),
            (
                TransformMode::AfterMapping,
                vec![
                    Column::new("id", Some("id"), vec![]),
                    Column::new("kind", Some("kind"), vec![]),
                    Column::new("name", Some("name"), vec![]),
                    Column::new("n", Some("n"), vec![]),
                    Column::new("missing", Some("nope"), vec![]),
                    Column::new("flag", Some("flag"), vec![]),
                ],
            ),
        ] {
            let s = step(dir.path(), mode, columns);
            let views: Vec<Option<View<'_>>> = chunk
                .iter()
                .map(|(_, p)| View::new(p, &s.columns).ok())
                .collect();
            let packed = packed::pack(views.iter().flatten().map(|v| v.fields.as_slice()))
                .expect("flat records take the packed lane");
            let fast = render(&s.run_packed(&chunk, &views, &packed).expect("packed"));
            let slow = render(&s.run_tables(&chunk, &views).expect("tables"));
            assert_eq!(fast, slow);
            if mode == TransformMode::InsteadOfMapping {
                assert!(
                    fast[0].contains(r#""big":123456789012345678901234"#),
                    "{}",
                    fast[0]
                );
                assert!(
                    fast[0].contains(r#""n":12.50"#) && fast[0].contains(r#""phone":5551234567"#),
                    "{}",
                    fast[0]
                );
                assert!(
                    fast[0].ends_with(r#""alpha":"a","zeta":"z"}"#),
                    "{}",
                    fast[0]
                );
                assert!(!fast[0].contains("removed"), "{}", fast[0]);
                assert!(fast[2].starts_with("dropped dropped: 3"), "{}", fast[2]);
                assert!(fast[3].contains("boom at record 4"), "{}", fast[3]);
                assert!(fast[4].contains("returned a number"), "{}", fast[4]);
                assert!(
                    fast[5].contains(r#""extra":{"a":1,"list":[1,2,3]}"#),
                    "{}",
                    fast[5]
                );
            }
        }
    }
}

#[cfg(test)]
mod column_lane {
    //! `transform_columns` must give what the per-record `transform` gives.
    use super::*;
    use crate::config::TransformMode;

    const PER_RECORD: &str = r#"
function transform(r, ctx)
  if r.kind == "drop" then return nil, "dropped: " .. tostring(r.id) end
  r.name = r.name and string.upper(r.name)
  r.removed = nil
  r.zeta, r.alpha = "z", "a"
  r.phone = r.phone and consign.digits_only(r.phone)
  if r.kind == "null" then r.name = consign.null end
  return r
end
"#;

    const COLUMNS: &str = r#"
function transform_columns(cols, n, ctx)
  local name, kind, id, phone = cols.name, cols.kind, cols.id, cols.phone
  local zeta = {}
  for i = 1, n do
    if kind[i] == "drop" then ctx.drop(i, "dropped: " .. tostring(id[i])) end
    if name[i] then name[i] = string.upper(name[i]) end
    if phone[i] then phone[i] = consign.digits_only(phone[i]) end
    if kind[i] == "null" then name[i] = consign.null end
    zeta[i] = "z"
  end
  ctx.remove("removed")
  cols.zeta, cols.alpha = zeta, "a"
  assert(#ctx.ids == n and ctx.n == n)
end
"#;

    fn run(dir: &std::path::Path, file: &str, text: &str, chunk: &[(i64, String)]) -> Vec<String> {
        std::fs::write(dir.join(file), text).expect("write");
        let script = Arc::new(Script::compile(dir, file, &["transform"], 1).expect("compile"));
        let cfg = DeliveryScripts {
            transform: Some(file.into()),
            mode: TransformMode::InsteadOfMapping,
            batch_size: 100,
            ..Default::default()
        };
        let step = TransformStep::new(script, &cfg, ScriptLimits::default(), vec![], "d", "b");
        step.run(chunk)
            .expect("run")
            .iter()
            .map(|o| match o {
                Outcome::Kept(j) => format!("kept {j}"),
                Outcome::Dropped(w) => format!("dropped {w}"),
                Outcome::Failed(e) => format!("failed {e}"),
            })
            .collect()
    }

    #[test]
    fn columns_agree_with_per_record_transform() {
        let chunk: Vec<(i64, String)> = [
            r#"{"id":1,"kind":"plain","name":"ann \"q\" é","removed":"x","n":12.50,"big":123456789012345678901234,"phone":"(555) 123-4567","flag":true,"nul":null}"#,
            r#"{"id":2,"kind":"drop","name":"bo"}"#,
            r#"{"id":3,"kind":"null","name":"cy","phone":5551234567,"zeta":"old"}"#,
            r#"{"id":4,"kind":"sparse"}"#,
            r#"not json"#,
        ]
        .iter()
        .enumerate()
        .map(|(i, s)| (i as i64 + 1, s.to_string()))
        .collect();
        let dir = tempfile::tempdir().expect("tmp");
        let per_record = run(dir.path(), "r.lua", PER_RECORD, &chunk);
        let columns = run(dir.path(), "c.lua", COLUMNS, &chunk);
        assert_eq!(per_record, columns);
        assert_eq!(
            columns[0],
            r#"kept {"id":1,"kind":"plain","name":"ANN \"Q\" é","n":12.50,"big":123456789012345678901234,"phone":"5551234567","flag":true,"nul":null,"alpha":"a","zeta":"z"}"#
        );
        assert_eq!(columns[1], "dropped dropped: 2");
        assert!(columns[2].contains(r#""name":null"#) && columns[2].contains(r#""zeta":"z""#));
        assert!(columns[4].starts_with("failed "), "{}", columns[4]);
    }

    #[test]
    fn column_arrays_and_drops_must_fit_the_chunk() {
        let chunk: Vec<(i64, String)> = [r#"{"v":"a"}"#, r#"{"v":"b"}"#]
            .iter()
            .enumerate()
            .map(|(i, s)| (i as i64 + 1, s.to_string()))
            .collect();
        let dir = tempfile::tempdir().expect("tmp");
        for (file, text, want) in [
            (
                "long.lua",
                "function transform_columns(cols, n) cols.x = {1, 2, 3} end",
                "cols.x has 3 entries for 1 records",
            ),
            (
                "drop.lua",
                "function transform_columns(cols, n, ctx) ctx.drop(n + 1, 'no') end",
                "must be an integer from 1 to 1",
            ),
        ] {
            std::fs::write(dir.path().join(file), text).expect("write");
            let script =
                Arc::new(Script::compile(dir.path(), file, &["transform"], 1).expect("compile"));
            let cfg = DeliveryScripts {
                transform: Some(file.into()),
                batch_size: 100,
                ..Default::default()
            };
            let step = TransformStep::new(script, &cfg, ScriptLimits::default(), vec![], "d", "b");
            let records: Vec<String> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let got = try_records(&step, &records);
            assert_eq!(got.len(), 2, "{file}: {got:?}");
            assert!(
                got.iter()
                    .all(|o| o.as_ref().is_err_and(|e| e.contains(want))),
                "{file}: {got:?}"
            );
        }
    }

    #[test]
    fn a_raising_column_transform_rejects_only_the_bad_record() {
        let chunk: Vec<(i64, String)> = [r#"{"v":"a"}"#, r#"{"v":"boom"}"#, r#"{"v":"c"}"#]
            .iter()
            .enumerate()
            .map(|(i, s)| (i as i64 + 1, s.to_string()))
            .collect();
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("c.lua"),
            "function transform_columns(cols, n)\n  local v = cols.v\n  for i = 1, n do\n    if v[i] == 'boom' then error('bad value') end\n    v[i] = v[i] .. '!'\n  end\nend\n",
        )
        .expect("write");
        let script =
            Arc::new(Script::compile(dir.path(), "c.lua", &["transform"], 1).expect("compile"));
        let cfg = DeliveryScripts {
            transform: Some("c.lua".into()),
            batch_size: 100,
            ..Default::default()
        };
        let step = TransformStep::new(script, &cfg, ScriptLimits::default(), vec![], "d", "b");
        let mut kept = Vec::new();
        let mut rejected = Vec::new();
        step.chunk(&chunk, &mut rejected, &mut |id, json| {
            kept.push(format!("{id} {json}"));
            Ok(())
        })
        .expect("chunk");
        assert_eq!(kept, vec![r#"1 {"v":"a!"}"#, r#"3 {"v":"c!"}"#]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].record, 2);
        assert!(
            rejected[0].reason.contains("c.lua:4") && rejected[0].reason.contains("bad value"),
            "{}",
            rejected[0].reason
        );
    }
}
