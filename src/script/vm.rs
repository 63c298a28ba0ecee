//! One sandboxed Lua VM: only safe libraries, `require` confined to the
//! scripts folder, text chunks only, a memory limit and an instruction and
//! time budget per call. A VM that broke a limit is thrown away by its owner
//! (see [`Vm::spoiled`]).

use super::helpers;
use super::ScriptError;
use crate::config::ScriptLimits;
use mlua::chunk::ChunkMode;
use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};
use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The hook runs every this many VM instructions.
const HOOK_EVERY: u32 = 1000;

/// Work allowed to the running call, checked by the instruction hook.
#[derive(Debug)]
struct Budget {
    /// Hook ticks left (each tick = HOOK_EVERY instructions).
    ticks: AtomicI64,
    deadline: Mutex<Option<Instant>>,
    /// Set when the call ran out: the VM is not reused.
    spent: AtomicBool,
    limits: Mutex<(u64, Duration)>,
}

/// Registry name of the host function telling whether the call's budget is spent.
pub const SPENT: &str = "consign.spent";

/// Files a VM loaded (the script and the modules it required) with their hashes.
pub type Loaded = Arc<Mutex<Vec<(String, String)>>>;

pub struct Vm {
    pub(super) lua: Lua,
    budget: Arc<Budget>,
    pub(super) loaded: Loaded,
}

/// The Lua side of the sandbox: runs once per VM before the script.
/// Pattern functions refuse a pattern whose backtracking could explode on a
/// long subject (C code cannot be interrupted by the instruction hook).
const PRELUDE: &str = r#"
local string, select, type, error, tostring, rawget = string, select, type, error, tostring, rawget
local spent = __consign_spent
__consign_spent = nil

-- A broken budget ends the whole call: pcall, xpcall and coroutine.resume
-- must not swallow it (a `while true do pcall(f) end` would run forever).
local opcall, oxpcall, oresume = pcall, xpcall, coroutine.resume
local function pass(ok, ...)
  if not ok and spent() then error((...), 0) end
  return ok, ...
end
pcall = function(...) return pass(opcall(...)) end
xpcall = function(...) return pass(oxpcall(...)) end
coroutine.resume = function(...) return pass(oresume(...)) end

-- No finalizers: a __gc runs outside every call's budget (hooks are off
-- during finalizers), so a looping one would stall the engine.
local osetmetatable = setmetatable
setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc finalizers are not allowed in consign scripts", 2)
  end
  return osetmetatable(t, mt)
end

-- Pattern functions run in C, where the instruction budget cannot stop
-- them: refuse a pattern whose backtracking could explode on its subject.
-- The worst case grows as #s ^ (repetitions + 1) (one more for trying
-- every start position unless the pattern is anchored with ^).
local orig = { find = string.find, match = string.match, gmatch = string.gmatch, gsub = string.gsub }
local reps = osetmetatable({}, { __mode = "k" })
local LIMIT = 1e9
local function quantifiers(p)
  local q = reps[p]
  if q == nil then
    -- %bxy scans ahead like a repetition.
    local balanced = select(2, orig.gsub(p, "%%b", ""))
    local plain = orig.gsub(orig.gsub(p, "%%.", "a"), "%[.-%]", "a")
    q = select(2, orig.gsub(plain, "[%*%+%-%?]", "")) + balanced
    reps[p] = q
  end
  return q
end
local function guard(name, s, p, plain)
  if type(s) == "string" and type(p) == "string" then
    local anchored = not plain and orig.find(p, "^", 1, true) == 1
    local q = plain and 0 or quantifiers(p)
    -- Every start position, times the work at each: #p for a literal,
    -- #s per repetition otherwise.
    local starts = anchored and 1 or (#s + 1)
    local cost = starts * (q == 0 and (#p + 1) or (#s + 1) ^ q)
    if cost > LIMIT then
      local shown = #p > 60 and (string.sub(p, 1, 60) .. "...") or p
      error(name .. ": pattern " .. string.format("%q", shown) .. " (" .. q ..
        " repetition(s)) is too costly for a subject of " .. #s .. " bytes (worst case about " ..
        string.format("%.0e", cost) .. " steps, it could run for hours); simplify it, anchor it with ^, or use consign helpers", 3)
    end
  end
end
string.find = function(s, p, init, plain) guard("string.find", s, p, plain) return orig.find(s, p, init, plain) end
string.match = function(s, p, init) guard("string.match", s, p) return orig.match(s, p, init) end
string.gmatch = function(s, p, init) guard("string.gmatch", s, p) return orig.gmatch(s, p, init) end
string.gsub = function(s, p, r, n) guard("string.gsub", s, p) return orig.gsub(s, p, r, n) end
string.dump = nil
"#;

impl Vm {
    /// A fresh sandboxed VM whose `require` loads modules from `dir` and
    /// notes them in `loaded`.
    pub fn new(dir: &Path, loaded: Loaded) -> Result<Vm, ScriptError> {
        let libs = StdLib::TABLE
            | StdLib::STRING
            | StdLib::MATH
            | StdLib::UTF8
            | StdLib::COROUTINE
            | StdLib::OS;
        let lua = Lua::new_with(libs, LuaOptions::new()).map_err(ScriptError::setup)?;
        let budget = Arc::new(Budget {
            ticks: AtomicI64::new(i64::MAX),
            deadline: Mutex::new(None),
            spent: AtomicBool::new(false),
            limits: Mutex::new((u64::MAX, Duration::MAX)),
        });
        let hook_budget = budget.clone();
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |_lua, _debug| {
                let b = &hook_budget;
                let left = b.ticks.fetch_sub(1, Ordering::Relaxed);
                let (instructions, timeout) = *b.limits.lock().unwrap_or_else(|p| p.into_inner());
                if left <= 0 {
                    b.spent.store(true, Ordering::Relaxed);
                    return Err(mlua::Error::runtime(format!(
                        "instruction budget exceeded ({instructions} instructions per call; [scripts.limits] instructions)"
                    )));
                }
                let deadline = *b.deadline.lock().unwrap_or_else(|p| p.into_inner());
                if deadline.is_some_and(|d| Instant::now() > d) {
                    b.spent.store(true, Ordering::Relaxed);
                    return Err(mlua::Error::runtime(format!(
                        "time budget exceeded ({} per call; [scripts.limits] timeout)",
                        humantime::format_duration(timeout)
                    )));
                }
                Ok(VmState::Continue)
            },
        )
        .map_err(ScriptError::setup)?;
        let vm = Vm {
            lua,
            budget,
            loaded,
        };
        // For the host's drivers and the sandbox's pcall: whether the running
        // call broke its budget (then it must end, not go on).
        let spent_budget = vm.budget.clone();
        let spent = vm
            .lua
            .create_function(move |_, ()| Ok(spent_budget.spent.load(Ordering::Relaxed)))
            .map_err(ScriptError::setup)?;
        vm.lua
            .set_named_registry_value(SPENT, spent.clone())
            .map_err(ScriptError::setup)?;
        vm.lua
            .globals()
            .raw_set("__consign_spent", spent)
            .map_err(ScriptError::setup)?;
        vm.sandbox(dir).map_err(ScriptError::setup)?;
        Ok(vm)
    }

    fn sandbox(&self, dir: &Path) -> mlua::Result<()> {
        let lua = &self.lua;
        let g = lua.globals();
        for name in ["dofile", "loadfile", "require", "collectgarbage", "print"] {
            g.raw_set(name, Value::Nil)?;
        }
        // os: only the clock and calendar functions.
        let os: Table = g.get("os")?;
        let safe_os = lua.create_table()?;
        for name in ["time", "date", "clock", "difftime"] {
            safe_os.raw_set(name, os.get::<Value>(name)?)?;
        }
        g.raw_set("os", safe_os)?;
        // load: text chunks only, never precompiled bytecode.
        let load =
            lua.create_function(
                |lua,
                 (chunk, name, _mode, env): (
                    mlua::LuaString,
                    Option<String>,
                    Value,
                    Option<Table>,
                )| {
                    let bytes = chunk.as_bytes().to_vec();
                    if bytes.first() == Some(&0x1b) {
                        return Ok((
                            Value::Nil,
                            Some("load: precompiled bytecode is not allowed".to_string()),
                        ));
                    }
                    let mut c = lua
                        .load(bytes)
                        .set_mode(ChunkMode::Text)
                        .set_name(name.unwrap_or_else(|| "=(load)".into()));
                    if let Some(env) = env {
                        c = c.set_environment(env);
                    }
                    match c.into_function() {
                        Ok(f) => Ok((Value::Function(f), None)),
                        Err(e) => Ok((Value::Nil, Some(e.to_string()))),
                    }
                },
            )?;
        g.raw_set("load", load)?;
        // collectgarbage("count") only: scripts may look, not steer.
        let gc = lua.create_function(|lua, opt: Option<String>| match opt.as_deref() {
            None | Some("count") => Ok(lua.used_memory() as f64 / 1024.0),
            Some(other) => Err(mlua::Error::runtime(format!(
                "collectgarbage({other:?}) is not available in consign scripts"
            ))),
        })?;
        g.raw_set("collectgarbage", gc)?;
        g.raw_set("require", self.require_fn(dir)?)?;
        lua.load(PRELUDE).set_name("=consign-prelude").exec()?;
        let consign = helpers::module(lua)?;
        g.raw_set("print", consign.get::<Function>("log")?)?;
        g.raw_set("consign", consign)?;
        Ok(())
    }

    /// `require("name")` / `require("dir.name")`: `DIR/name.lua`, never outside DIR.
    fn require_fn(&self, dir: &Path) -> mlua::Result<Function> {
        let dir = dir.to_path_buf();
        let loaded = self.loaded.clone();
        let cache = self.lua.create_table()?;
        self.lua.create_function(move |lua, name: String| {
            if let Some(v) = cache.raw_get::<Option<Value>>(name.as_str())? {
                return Ok(v);
            }
            let rel = module_path(&name).map_err(mlua::Error::runtime)?;
            let path = dir.join(&rel);
            // A symlink must not lead out of the scripts folder.
            let inside = match (path.canonicalize(), dir.canonicalize()) {
                (Ok(real), Ok(root)) => real.starts_with(&root),
                _ => true, // missing: the read below says so
            };
            if !inside {
                return Err(mlua::Error::runtime(format!(
                    "require({name:?}): {} leads outside the scripts folder (a symlink?); modules must live in it",
                    rel.display()
                )));
            }
            let source = std::fs::read(&path).map_err(|e| {
                mlua::Error::runtime(format!(
                    "require({name:?}): cannot read {}: {e}",
                    path.display()
                ))
            })?;
            if source.first() == Some(&0x1b) {
                return Err(mlua::Error::runtime(format!(
                    "require({name:?}): {} is precompiled bytecode, which is not allowed",
                    rel.display()
                )));
            }
            loaded.lock().unwrap_or_else(|p| p.into_inner()).push((
                rel.display().to_string(),
                hex::encode(Sha256::digest(&source)),
            ));
            let value: Value = lua
                .load(source)
                .set_mode(ChunkMode::Text)
                .set_name(format!("@{}", rel.display()))
                .call(name.as_str())?;
            let value = if value.is_nil() {
                Value::Boolean(true)
            } else {
                value
            };
            cache.raw_set(name.as_str(), value.clone())?;
            Ok(value)
        })
    }

    /// Run `f` as one call under `limits`. Afterwards [`Vm::spoiled`] says
    /// whether the VM may be used again.
    pub fn call<R>(
        &self,
        limits: &ScriptLimits,
        f: impl FnOnce(&Lua) -> mlua::Result<R>,
    ) -> mlua::Result<R> {
        let timeout = limits.timeout.0;
        *self.budget.limits.lock().unwrap_or_else(|p| p.into_inner()) =
            (limits.instructions, timeout);
        self.budget.spent.store(false, Ordering::Relaxed);
        self.budget.ticks.store(
            (limits.instructions / HOOK_EVERY as u64).max(1) as i64,
            Ordering::Relaxed,
        );
        *self
            .budget
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now().checked_add(timeout);
        // The memory limit covers everything the VM holds, set before each call.
        let _ = self.lua.set_memory_limit(limits.memory.0 as usize);
        let r = f(&self.lua);
        *self
            .budget
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        if matches!(&r, Err(e) if is_memory(e)) {
            self.budget.spent.store(true, Ordering::Relaxed);
        }
        r
    }

    /// The VM broke a limit (memory, instructions, time): do not reuse it.
    pub fn spoiled(&self) -> bool {
        self.budget.spent.load(Ordering::Relaxed)
    }
}

fn is_memory(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory(cause),
        mlua::Error::WithContext { cause, .. } => is_memory(cause),
        _ => false,
    }
}

/// `a.b` → `a/b.lua`; refuses anything that could leave the folder.
fn module_path(name: &str) -> Result<PathBuf, String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..");
    if !ok {
        return Err(format!(
            "require({name:?}): module names are letters, digits, `_`, `-` and dots (a.b loads a/b.lua from the scripts folder)"
        ));
    }
    let rel = PathBuf::from(format!("{}.lua", name.replace('.', "/")));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!(
            "require({name:?}): not a path inside the scripts folder"
        ));
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_stay_inside_the_folder() {
        assert_eq!(module_path("util").expect("ok"), PathBuf::from("util.lua"));
        assert_eq!(
            module_path("lib.phone").expect("ok"),
            PathBuf::from("lib/phone.lua")
        );
        for bad in ["../etc/passwd", "/etc/passwd", "a..b", ".hidden", "a/b", ""] {
            assert!(module_path(bad).is_err(), "{bad}");
        }
    }
}
