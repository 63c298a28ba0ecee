//! The Lua host: per-partner scripts that transform records
//! ([`transform`]), judge a partner's reply ([`response`]) and decide when to
//! cut a batch ([`schedule`]).
//!
//! [`Scripts`] holds the active version of every script the config names.
//! A reload compiles each changed file (and its optional `self_test()`)
//! beside the running version and swaps it in atomically; on any error the
//! last good version stays active and the error is kept for `status`.
//! Callers take an `Arc<Script>` for the whole of their work, so a batch
//! that started assembling finishes with the version it started with.

mod columns;
pub mod helpers;
mod packed;
pub mod response;
pub mod schedule;
pub mod transform;
pub mod value;
mod vm;

use crate::config::{Config, ScriptLimits};
use crate::store::Component;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use vm::Vm;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ScriptError {
    #[error("script {path}: cannot read it: {message}")]
    Read { path: String, message: String },
    #[error("script {path}: {message}")]
    Compile { path: String, message: String },
    #[error("script {path}: {message}")]
    Runtime { path: String, message: String },
    #[error("Lua setup: {0}")]
    Setup(String),
}

impl ScriptError {
    fn setup(e: mlua::Error) -> ScriptError {
        ScriptError::Setup(e.to_string())
    }
}

/// Functions a script must define for each role it is named for.
fn required(role: &str) -> &'static [&'static str] {
    match role {
        "transform" => &["transform", "transform_batch", "transform_columns"],
        "response" => &["on_response"],
        "schedule" => &["next_batch"],
        _ => &[],
    }
}

/// One compiled version of one script file.
pub struct Script {
    /// As named in the config (relative to the scripts folder).
    pub path: String,
    pub sha256: String,
    /// Modules its VMs `require`d so far, with their hashes.
    modules: vm::Loaded,
    /// Reload generation that produced this version.
    pub generation: u64,
    dir: PathBuf,
    source: Vec<u8>,
    /// Idle VMs with the script loaded. A VM that broke a limit is dropped.
    pool: Mutex<Vec<Vm>>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("generation", &self.generation)
            .finish()
    }
}

impl Script {
    /// Read and compile `dir/path`, check it defines what `roles` need, run
    /// its `self_test()` if it has one.
    pub fn compile(
        dir: &Path,
        path: &str,
        roles: &[&str],
        generation: u64,
    ) -> Result<Script, ScriptError> {
        let file = dir.join(path);
        let source = std::fs::read(&file).map_err(|e| ScriptError::Read {
            path: file.display().to_string(),
            message: e.to_string(),
        })?;
        let script = Script {
            path: path.to_string(),
            sha256: hex::encode(Sha256::digest(&source)),
            modules: vm::Loaded::default(),
            generation,
            dir: dir.to_path_buf(),
            source,
            pool: Mutex::new(Vec::new()),
        };
        let vm = script.fresh_vm()?;
        let globals = vm.lua.globals();
        for role in roles {
            let names = required(role);
            if !names.is_empty()
                && !names.iter().any(|n| {
                    matches!(
                        globals.raw_get::<mlua::Value>(*n),
                        Ok(mlua::Value::Function(_))
                    )
                })
            {
                return Err(ScriptError::Compile {
                    path: path.to_string(),
                    message: format!(
                        "is named as a {role} script but defines no function {}",
                        names.join(" or ")
                    ),
                });
            }
        }
        if let Ok(mlua::Value::Function(test)) = globals.raw_get::<mlua::Value>("self_test") {
            vm.call(&ScriptLimits::default(), |_| test.call::<()>(()))
                .map_err(|e| ScriptError::Compile {
                    path: path.to_string(),
                    message: format!("self_test() failed: {}", clean(&e)),
                })?;
        }
        script
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(vm);
        Ok(script)
    }

    fn fresh_vm(&self) -> Result<Vm, ScriptError> {
        let vm = Vm::new(&self.dir, self.modules.clone())?;
        vm.call(&ScriptLimits::default(), |lua| {
            lua.load(self.source.as_slice())
                .set_mode(mlua::chunk::ChunkMode::Text)
                .set_name(format!("@{}", self.path))
                .exec()
        })
        .map_err(|e| ScriptError::Compile {
            path: self.path.clone(),
            message: clean(&e),
        })?;
        Ok(vm)
    }

    /// Run `f` in one of this script's VMs as one call under `limits`.
    /// A VM that broke a limit is discarded; the error is the call's.
    pub fn with_vm<R>(
        &self,
        limits: &ScriptLimits,
        f: impl FnOnce(&mlua::Lua) -> mlua::Result<R>,
    ) -> Result<R, ScriptError> {
        let vm = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let vm = match vm {
            Some(vm) => vm,
            None => self.fresh_vm()?,
        };
        let r = vm.call(limits, f);
        if vm.spoiled() {
            tracing::warn!(script = %self.path, "a call broke its limits; its Lua VM is discarded");
        } else {
            self.pool.lock().unwrap_or_else(|p| p.into_inner()).push(vm);
        }
        r.map_err(|e| ScriptError::Runtime {
            path: self.path.clone(),
            message: clean(&e),
        })
    }

    /// Modules required so far (path in the scripts folder, SHA-256).
    pub fn modules(&self) -> Vec<(String, String)> {
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The script and its modules, for the batch's provenance.
    pub fn components(&self) -> Vec<Component> {
        let mut out = vec![Component {
            kind: "script".into(),
            name: self.path.clone(),
            sha256: self.sha256.clone(),
        }];
        for (name, sha) in self.modules() {
            out.push(Component {
                kind: "script".into(),
                name: name.clone(),
                sha256: sha.clone(),
            });
        }
        out
    }
}

/// An mlua error as the integrator should read it: `file:line: message`
/// and the traceback, without mlua's wrapping.
pub fn clean(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, traceback } => {
            let inner = clean(cause);
            if inner.contains("stack traceback") {
                inner
            } else {
                format!("{inner}\n{traceback}")
            }
        }
        mlua::Error::WithContext { context, cause } => format!("{context}: {}", clean(cause)),
        mlua::Error::RuntimeError(m) | mlua::Error::SyntaxError { message: m, .. } => m.clone(),
        mlua::Error::MemoryError(m) => {
            format!("memory limit exceeded ({m}); [scripts.limits] memory")
        }
        other => other.to_string(),
    }
}

/// A script's state for `status` and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScriptStatus {
    pub path: String,
    pub roles: Vec<String>,
    pub sha256: Option<String>,
    pub generation: Option<u64>,
    /// The last reload's error (the previous version, if any, still serves).
    pub error: Option<String>,
}

/// What a reload did.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ReloadReport {
    pub generation: u64,
    pub reloaded: Vec<String>,
    pub unchanged: Vec<String>,
    /// (path, error): these keep their last good version.
    pub failed: Vec<(String, String)>,
}

/// The active version of every script the config names.
pub struct Scripts {
    dir: PathBuf,
    /// path → roles it is named for.
    wanted: BTreeMap<String, Vec<&'static str>>,
    active: RwLock<BTreeMap<String, Arc<Script>>>,
    errors: RwLock<BTreeMap<String, String>>,
    generation: AtomicU64,
    /// One reload at a time (watcher, SIGHUP and API may race).
    reloading: Mutex<()>,
}

impl Scripts {
    /// Compile every script the config names. Errors are returned all at
    /// once; nothing is active for a script that failed.
    pub fn load(config: &Config) -> (Scripts, Vec<ScriptError>) {
        let mut wanted: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        for d in &config.deliveries {
            if let Some(s) = &d.scripts {
                for (role, path) in s.files() {
                    let roles = wanted.entry(path.to_string()).or_default();
                    if !roles.contains(&role) {
                        roles.push(role);
                    }
                }
            }
        }
        let scripts = Scripts {
            dir: config.scripts.dir.clone(),
            wanted,
            active: RwLock::default(),
            errors: RwLock::default(),
            generation: AtomicU64::new(0),
            reloading: Mutex::new(()),
        };
        let report = scripts.reload();
        let errors = report
            .failed
            .into_iter()
            .map(|(path, message)| ScriptError::Compile { path, message })
            .collect();
        (scripts, errors)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The active version of `path`.
    pub fn get(&self, path: &str) -> Option<Arc<Script>> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// Re-read every script; compile the changed ones beside the active
    /// version and swap them in. A file whose modules changed is reloaded too.
    pub fn reload(&self) -> ReloadReport {
        let _one = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let mut report = ReloadReport {
            generation,
            ..Default::default()
        };
        for (path, roles) in &self.wanted {
            if let Some(cur) = self.get(path) {
                if !self.changed(&cur) {
                    report.unchanged.push(path.clone());
                    self.errors
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(path);
                    continue;
                }
            }
            match Script::compile(&self.dir, path, roles, generation) {
                Ok(s) => {
                    tracing::info!(script = %path, sha256 = %&s.sha256[..12], generation, "script loaded");
                    self.active
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(path.clone(), Arc::new(s));
                    self.errors
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(path);
                    report.reloaded.push(path.clone());
                }
                Err(e) => {
                    let msg = match &e {
                        ScriptError::Compile { message, .. } => message.clone(),
                        other => other.to_string(),
                    };
                    if self.get(path).is_some() {
                        tracing::error!(script = %path, "reload failed; the previous version stays active: {msg}");
                    }
                    self.errors
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(path.clone(), msg.clone());
                    report.failed.push((path.clone(), msg));
                }
            }
        }
        report
    }

    /// Whether the file or one of its modules differs from `cur`.
    fn changed(&self, cur: &Script) -> bool {
        let hash = |rel: &str| {
            std::fs::read(self.dir.join(rel))
                .ok()
                .map(|b| hex::encode(Sha256::digest(&b)))
        };
        hash(&cur.path).as_deref() != Some(cur.sha256.as_str())
            || cur
                .modules()
                .iter()
                .any(|(m, sha)| hash(m).as_deref() != Some(sha.as_str()))
    }

    pub fn status(&self) -> Vec<ScriptStatus> {
        let errors = self.errors.read().unwrap_or_else(|p| p.into_inner());
        self.wanted
            .iter()
            .map(|(path, roles)| {
                let cur = self.get(path);
                ScriptStatus {
                    path: path.clone(),
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                    sha256: cur.as_ref().map(|s| s.sha256.clone()),
                    generation: cur.as_ref().map(|s| s.generation),
                    error: errors.get(path).cloned(),
                }
            })
            .collect()
    }

    /// Reload when a file in the scripts folder changes (one reload per
    /// burst of events). The watcher lives as long as the returned handle.
    pub fn watch(self: &Arc<Self>) -> Result<notify::RecommendedWatcher, String> {
        let me = Arc::downgrade(self);
        crate::watch::on_change(&self.dir, "script-watch", move || {
            let Some(scripts) = me.upgrade() else {
                return false;
            };
            let r = scripts.reload();
            if !r.reloaded.is_empty() || !r.failed.is_empty() {
                tracing::info!(reloaded = ?r.reloaded, failed = r.failed.len(), "scripts folder changed: reloaded");
            }
            true
        })
    }
}

#[cfg(test)]
mod tests;
