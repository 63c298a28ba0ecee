//! Destination plugins: WASM components (sandboxed, [`wasm`]) and native
//! shared libraries (trusted, [`native`]), loaded from the plugins folder.
//!
//! [`Plugins`] holds the active version of every plugin package found in the
//! folder. A reload reads each `plugin.toml`, compiles changed artefacts
//! beside the running version and swaps them in; on any error the last good
//! version stays active and the error is kept for `status`. Callers take an
//! `Arc<Loaded>` for a whole attempt, so a batch in flight finishes on the
//! version it started with.

pub mod capability;
pub mod manifest;
mod native;
mod wasm;

use crate::config::PluginsConfig;
use capability::Grants;
use manifest::{Kind, Manifest};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// What `info()` of a plugin says.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub description: String,
}

/// One file handed to a plugin.
#[derive(Debug, Clone)]
pub struct FileInput {
    pub part: u32,
    pub kind: String,
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub records: u64,
}

/// The batch a `deliver` call gets.
#[derive(Debug, Clone)]
pub struct BatchInput {
    pub id: String,
    pub delivery: String,
    pub record_count: u64,
    pub cut_at: String,
    pub zone: String,
    pub files: Vec<FileInput>,
    pub already: Vec<u32>,
}

/// Everything one call needs besides the plugin.
#[derive(Debug, Clone)]
pub struct CallInput {
    pub plugin: String,
    /// The resolved configuration (operator values over manifest defaults).
    pub config: serde_json::Map<String, serde_json::Value>,
    pub grants: Grants,
    pub ca_file: Option<PathBuf>,
    /// `None`: a connection check.
    pub batch: Option<BatchInput>,
}

/// Limits of one call into a WASM plugin.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Linear memory, bytes.
    pub memory: u64,
    /// The plugin's own compute time (host calls such as HTTP not counted).
    pub timeout: Duration,
    /// Fuel, when the engine counts it.
    pub fuel: Option<u64>,
}

/// A call's result as the plugin reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub message: String,
    pub remote_ids: Vec<String>,
}

/// A failure the plugin itself reported (its typed error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Retryable {
        message: String,
        after: Option<Duration>,
    },
    Auth(String),
    Rejected {
        code: String,
        message: String,
    },
    Permanent(String),
}

/// Why a call did not return the plugin's answer, or the plugin's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{0:?}")]
    Plugin(Failure),
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("plugin stopped: {0}")]
    Deadline(String),
    #[error("plugin stopped: {0}")]
    Memory(String),
    #[error("plugin host: {0}")]
    Host(String),
    #[error("{0}")]
    CrashLoop(String),
}

impl CallError {
    /// Traps, deadlines and limit breaches count towards the crash-loop limit.
    fn is_crash(&self) -> bool {
        matches!(
            self,
            CallError::Trap(_) | CallError::Deadline(_) | CallError::Memory(_)
        )
    }
}

enum Impl {
    Wasm(wasm::WasmPlugin),
    Native(native::NativePlugin),
}

/// One loaded version of one plugin package.
pub struct Loaded {
    pub manifest: Manifest,
    pub dir: PathBuf,
    /// SHA-256 of the component or library file.
    pub sha256: String,
    pub size: u64,
    pub generation: u64,
    pub info: Info,
    /// Compiled artefact came from the cache.
    pub cached: bool,
    pub load_time: Duration,
    imp: Impl,
    /// Crashes (traps, deadlines, limit breaches) in a row.
    crashes: AtomicU32,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("name", &self.manifest.name)
            .field("version", &self.manifest.version)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl Loaded {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn kind(&self) -> Kind {
        self.manifest.kind
    }

    /// What the component imports and exports (native: the C symbols).
    pub fn interface(&self) -> (Vec<String>, Vec<String>) {
        match &self.imp {
            Impl::Wasm(p) => (p.imports.clone(), p.exports.clone()),
            Impl::Native(_) => (
                Vec::new(),
                vec![
                    "consign_plugin_abi_version".into(),
                    "consign_plugin_vtable".into(),
                ],
            ),
        }
    }

    pub fn crashes(&self) -> u32 {
        self.crashes.load(Ordering::Relaxed)
    }

    /// Call `deliver` (with a batch) or `check`. Parts the plugin reports
    /// as accepted reach `accepted` while the call runs. After
    /// `crash_limit` crashes in a row the plugin is not called any more
    /// until it is reloaded.
    pub fn call(
        &self,
        input: &CallInput,
        limits: &CallLimits,
        crash_limit: u32,
        accepted: Option<&(dyn Fn(u32) + Sync)>,
    ) -> Result<Outcome, CallError> {
        let crashes = self.crashes();
        if crash_limit > 0 && crashes >= crash_limit {
            return Err(CallError::CrashLoop(format!(
                "plugin {} {} is suspended after {crashes} crashes in a row (traps, deadlines or limit breaches); fix or replace it, `consign reload`, then `consign deliveries resume`",
                self.manifest.name, self.manifest.version
            )));
        }
        let r = match &self.imp {
            Impl::Wasm(p) => std::thread::scope(|scope| {
                let (tx, rx) = std::sync::mpsc::channel::<u32>();
                if let Some(f) = accepted {
                    scope.spawn(move || {
                        for part in rx {
                            f(part);
                        }
                    });
                }
                p.call(input, limits, accepted.map(|_| tx))
            }),
            Impl::Native(p) => p.call(input),
        };
        match &r {
            Err(e) if e.is_crash() => {
                let n = self.crashes.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(plugin = %self.manifest.name, version = %self.manifest.version, crashes = n, "{e}");
            }
            _ => self.crashes.store(0, Ordering::Relaxed),
        }
        r
    }
}

/// A plugin package's state for `status`, `plugin list` and the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    /// Folder name inside the plugins folder.
    pub folder: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub kind: Option<Kind>,
    pub sha256: Option<String>,
    pub generation: Option<u64>,
    pub crashes: u32,
    /// The last load's error (a previous version, if any, still serves).
    pub error: Option<String>,
}

/// What a reload of the plugins folder did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PluginReport {
    /// `name version` of each plugin (re)loaded.
    pub loaded: Vec<String>,
    pub unchanged: Vec<String>,
    /// (folder, error): these keep their last good version.
    pub failed: Vec<(String, String)>,
    pub removed: Vec<String>,
}

/// The active version of every plugin in the plugins folder.
pub struct Plugins {
    cfg: PluginsConfig,
    wasm: OnceLock<Result<Arc<wasm::WasmHost>, String>>,
    /// name → active version.
    active: RwLock<BTreeMap<String, Arc<Loaded>>>,
    /// folder → name of the plugin it holds.
    folders: RwLock<BTreeMap<String, String>>,
    /// folder → last load error.
    errors: RwLock<BTreeMap<String, String>>,
    generation: AtomicU64,
    reloading: Mutex<()>,
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Plugins {
    /// Load every plugin of the folder. Errors are returned (and kept for
    /// `status`); a plugin that failed is simply not active.
    pub fn load(cfg: &PluginsConfig) -> (Plugins, Vec<String>) {
        let plugins = Plugins::empty(cfg);
        let r = plugins.reload();
        let errors = r
            .failed
            .iter()
            .map(|(f, e)| format!("plugin {f}: {e}"))
            .collect();
        (plugins, errors)
    }

    /// A registry with nothing loaded yet (`plugin inspect|check PATH`).
    pub fn empty(cfg: &PluginsConfig) -> Plugins {
        Plugins {
            cfg: cfg.clone(),
            wasm: OnceLock::new(),
            active: RwLock::default(),
            folders: RwLock::default(),
            errors: RwLock::default(),
            generation: AtomicU64::new(0),
            reloading: Mutex::new(()),
        }
    }

    pub fn config(&self) -> &PluginsConfig {
        &self.cfg
    }

    /// The active version of plugin `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Loaded>> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Make `p` the active version of its plugin (`plugin check PATH`).
    pub fn insert(&self, p: Loaded) {
        let folder = p
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        self.folders
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(folder, p.manifest.name.clone());
        self.active
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(p.manifest.name.clone(), Arc::new(p));
    }

    /// Why plugin `name` is not active (for error messages).
    pub fn why_missing(&self, name: &str) -> String {
        let folders = read(&self.folders);
        let errors = read(&self.errors);
        if let Some((folder, e)) = errors
            .iter()
            .find(|(f, _)| folders.get(*f).map(String::as_str) == Some(name) || *f == name)
        {
            return format!("plugin {name} did not load ({folder}): {e}");
        }
        format!(
            "no plugin named {name} in {} (found: {})",
            self.cfg.dir.display(),
            if folders.is_empty() {
                "none".to_string()
            } else {
                folders.values().cloned().collect::<Vec<_>>().join(", ")
            }
        )
    }

    fn wasm_host(&self) -> Result<Arc<wasm::WasmHost>, String> {
        self.wasm
            .get_or_init(|| wasm::WasmHost::new(self.cfg.fuel.is_some()).map(Arc::new))
            .clone()
    }

    /// Limits of a call, from the plugins defaults and a destination's overrides.
    pub fn limits(
        &self,
        memory: Option<u64>,
        timeout: Option<Duration>,
        fuel: Option<u64>,
    ) -> CallLimits {
        CallLimits {
            memory: memory.unwrap_or(self.cfg.memory_limit.0),
            timeout: timeout.unwrap_or(self.cfg.timeout.0),
            fuel: fuel.or(self.cfg.fuel),
        }
    }

    /// Load one package from `dir` (also used by `consign plugin inspect|check PATH`).
    pub fn load_package(&self, dir: &Path, generation: u64) -> Result<Loaded, String> {
        let t0 = Instant::now();
        let manifest = Manifest::read(dir)?;
        let file = dir.join(&manifest.file);
        let bytes = std::fs::read(&file).map_err(|e| {
            format!(
                "{}: cannot read it: {e}{}",
                file.display(),
                if manifest.kind == Kind::Native {
                    " (native plugins are built, not shipped: plugins/build.sh)"
                } else {
                    ""
                }
            )
        })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let limits = self.limits(None, None, None);
        let (imp, info, cached) = match manifest.kind {
            Kind::Wasm => {
                let host = self.wasm_host()?;
                let (p, info, cached) = host
                    .load(&bytes, &sha256, Some(&self.cfg.cache_dir), &limits)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                (Impl::Wasm(p), info, cached)
            }
            Kind::Native => {
                let p = native::NativePlugin::load(&file)?;
                let info = p.info();
                (Impl::Native(p), info, false)
            }
        };
        if info.name != manifest.name || info.version != manifest.version {
            return Err(format!(
                "{} says it is {} {}, but its plugin.toml says {} {}: rebuild it or fix the manifest",
                file.display(),
                info.name,
                info.version,
                manifest.name,
                manifest.version
            ));
        }
        Ok(Loaded {
            dir: dir.to_path_buf(),
            sha256,
            size: bytes.len() as u64,
            generation,
            info,
            cached,
            load_time: t0.elapsed(),
            imp,
            crashes: AtomicU32::new(0),
            manifest,
        })
    }

    /// Re-read the plugins folder: load new and changed packages beside the
    /// active versions and swap them in; drop packages whose folder is gone.
    /// Crash counters start again (the operator asked for it).
    pub fn reload(&self) -> PluginReport {
        let _one = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let mut report = PluginReport::default();
        let mut seen_folders = BTreeMap::new();
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(&self.cfg.dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("plugin.toml").is_file())
                .collect(),
            Err(_) => Vec::new(),
        };
        entries.sort();
        for dir in entries {
            let folder = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let fail = |report: &mut PluginReport, e: String| {
                if let Some(name) = read(&self.folders).get(&folder) {
                    if self.get(name).is_some() {
                        tracing::error!(plugin = %name, "reload failed; the previous version stays active: {e}");
                    }
                }
                self.errors
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(folder.clone(), e.clone());
                report.failed.push((folder.clone(), e));
            };
            // Unchanged: same manifest name and same artefact bytes.
            let manifest = match Manifest::read(&dir) {
                Ok(m) => m,
                Err(e) => {
                    fail(&mut report, e);
                    seen_folders.insert(folder.clone(), String::new());
                    continue;
                }
            };
            if let Some(other) = names.get(&manifest.name) {
                fail(
                    &mut report,
                    format!(
                        "plugin name {} is already used by folder {other}",
                        manifest.name
                    ),
                );
                continue;
            }
            names.insert(manifest.name.clone(), folder.clone());
            seen_folders.insert(folder.clone(), manifest.name.clone());
            if let Some(cur) = self.get(&manifest.name) {
                let same = cur.dir == dir
                    && std::fs::read(dir.join(&manifest.file))
                        .map(|b| hex::encode(Sha256::digest(&b)) == cur.sha256)
                        .unwrap_or(false)
                    && cur.manifest.version == manifest.version;
                if same {
                    cur.crashes.store(0, Ordering::Relaxed);
                    self.errors
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&folder);
                    report
                        .unchanged
                        .push(format!("{} {}", manifest.name, manifest.version));
                    continue;
                }
            }
            match self.load_package(&dir, generation) {
                Ok(p) => {
                    tracing::info!(plugin = %p.manifest.name, version = %p.manifest.version, sha256 = %&p.sha256[..12], cached = p.cached, ms = p.load_time.as_millis() as u64, generation, "plugin loaded");
                    report
                        .loaded
                        .push(format!("{} {}", p.manifest.name, p.manifest.version));
                    self.active
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(p.manifest.name.clone(), Arc::new(p));
                    self.errors
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&folder);
                }
                Err(e) => fail(&mut report, e),
            }
        }
        // Packages whose folder is gone (or now holds another plugin).
        let keep: Vec<String> = seen_folders.values().cloned().collect();
        {
            let mut active = self.active.write().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<String> = active
                .keys()
                .filter(|n| !keep.contains(n))
                .cloned()
                .collect();
            for n in gone {
                active.remove(&n);
                tracing::warn!(plugin = %n, "plugin removed from the plugins folder");
                report.removed.push(n);
            }
        }
        {
            let mut errors = self.errors.write().unwrap_or_else(|p| p.into_inner());
            errors.retain(|f, _| seen_folders.contains_key(f));
        }
        *self.folders.write().unwrap_or_else(|p| p.into_inner()) = seen_folders
            .into_iter()
            .filter(|(_, n)| !n.is_empty())
            .collect();
        report
    }

    pub fn status(&self) -> Vec<PluginStatus> {
        let folders = read(&self.folders);
        let errors = read(&self.errors);
        let mut all: BTreeMap<String, PluginStatus> = BTreeMap::new();
        for (folder, name) in &folders {
            let cur = self.get(name);
            all.insert(
                folder.clone(),
                PluginStatus {
                    folder: folder.clone(),
                    name: Some(name.clone()),
                    version: cur.as_ref().map(|p| p.manifest.version.clone()),
                    kind: cur.as_ref().map(|p| p.manifest.kind),
                    sha256: cur.as_ref().map(|p| p.sha256.clone()),
                    generation: cur.as_ref().map(|p| p.generation),
                    crashes: cur.as_ref().map_or(0, |p| p.crashes()),
                    error: errors.get(folder).cloned(),
                },
            );
        }
        for (folder, e) in errors {
            all.entry(folder.clone()).or_insert(PluginStatus {
                folder,
                name: None,
                version: None,
                kind: None,
                sha256: None,
                generation: None,
                crashes: 0,
                error: Some(e),
            });
        }
        all.into_values().collect()
    }

    /// Reload when something in the plugins folder changes.
    pub fn watch(self: &Arc<Self>) -> Result<notify::RecommendedWatcher, String> {
        let me = Arc::downgrade(self);
        crate::watch::on_change(&self.cfg.dir, "plugin-watch", move || {
            let Some(p) = me.upgrade() else { return false };
            let r = p.reload();
            if !r.loaded.is_empty() || !r.failed.is_empty() || !r.removed.is_empty() {
                tracing::info!(loaded = ?r.loaded, failed = r.failed.len(), removed = ?r.removed, "plugins folder changed: reloaded");
            }
            true
        })
    }
}

#[cfg(test)]
mod tests;
