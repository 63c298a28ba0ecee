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
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The delivery calling (crash counts are kept per delivery).
    pub delivery: String,
    /// Values to redact from anything the plugin says (its secret settings).
    pub secrets: Vec<String>,
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
    /// The whole call, wall clock, host calls included.
    pub call_timeout: Duration,
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
    /// Crashes (traps, deadlines, limit breaches) in a row, per delivery.
    crashes: Mutex<BTreeMap<String, u32>>,
    /// SHA-256 of the plugin.toml this version was loaded with.
    manifest_sha256: String,
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

    fn crash_counts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u32>> {
        self.crashes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call `deliver` (with a batch) or `check`. Parts the plugin reports
    /// as accepted reach `accepted` while the call runs. After
    /// `crash_limit` crashes in a row for one delivery, the plugin is not
    /// called for that delivery any more until it is reloaded.
    pub fn call(
        &self,
        input: &CallInput,
        limits: &CallLimits,
        crash_limit: u32,
        accepted: Option<&(dyn Fn(u32) + Sync)>,
    ) -> Result<Outcome, CallError> {
        let crashes = self
            .crash_counts()
            .get(&input.delivery)
            .copied()
            .unwrap_or(0);
        if crash_limit > 0 && crashes >= crash_limit {
            return Err(CallError::CrashLoop(format!(
                "plugin {} {} is suspended for delivery {} after {crashes} crashes in a row (traps, deadlines or limit breaches); fix or replace it, `consign reload`, then `consign deliveries resume {}`",
                self.manifest.name, self.manifest.version, input.delivery, input.delivery
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
                let mut counts = self.crash_counts();
                let n = counts.entry(input.delivery.clone()).or_insert(0);
                *n += 1;
                tracing::error!(plugin = %self.manifest.name, version = %self.manifest.version, delivery = %input.delivery, crashes = *n, "{}", tidy(&e.to_string(), &input.secrets));
            }
            _ => {
                self.crash_counts().remove(&input.delivery);
            }
        }
        r
    }
}

/// Longest text taken from a plugin (messages, codes, ids).
const MAX_TEXT: usize = 2000;

/// Text from a plugin, made safe to store, log and print: secret values
/// redacted, control characters (newlines, terminal escapes) replaced, and
/// cut to a bounded length.
pub fn tidy(text: &str, secrets: &[String]) -> String {
    let mut t = text.to_string();
    for s in secrets {
        if !s.is_empty() && t.contains(s.as_str()) {
            t = t.replace(s.as_str(), "***");
        }
    }
    let mut out = String::with_capacity(t.len().min(MAX_TEXT + 32));
    for (n, c) in t.chars().enumerate() {
        if n == MAX_TEXT {
            out.push_str(&format!("… ({} more bytes)", t.len() - out.len()));
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
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
    /// Crashes in a row, per delivery that had any (counted by this process).
    pub crashes: BTreeMap<String, u32>,
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
            .or_else(|| {
                errors
                    .iter()
                    .find(|(_, e)| e.contains(&format!("plugin {name} ")))
            })
        {
            return format!("plugin {name} did not load ({folder}): {e}");
        }
        format!(
            "no plugin named {name} in {} (found: {})",
            self.cfg.dir.display(),
            if folders.is_empty() {
                "none".to_string()
            } else {
                folders
                    .values()
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
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
            call_timeout: self.cfg.call_timeout.0,
            fuel: fuel.or(self.cfg.fuel),
        }
    }

    /// Load one package from `dir` (also used by `consign plugin inspect|check PATH`).
    pub fn load_package(&self, dir: &Path, generation: u64) -> Result<Loaded, String> {
        let t0 = Instant::now();
        let manifest = Manifest::read(dir)?;
        let manifest_sha256 = manifest_hash(dir);
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
                // Loaded from a private copy named by its hash: replacing the
                // file in the plugins folder (even in place) cannot touch the
                // mapped code, and a new build is a new path, so dlopen loads
                // it instead of handing back the library already loaded.
                let private = self
                    .cfg
                    .cache_dir
                    .join("native")
                    .join(format!("{sha256}.so"));
                if !private.is_file() {
                    write_private(&private, &bytes).map_err(|e| {
                        format!(
                            "cannot copy {} to {}: {e}",
                            file.display(),
                            private.display()
                        )
                    })?;
                }
                let p = native::NativePlugin::load(&private, &file)?;
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
            crashes: Mutex::default(),
            manifest_sha256,
            manifest,
        })
    }

    /// Re-read the plugins folder: load new and changed packages beside the
    /// active versions and swap them in; drop packages whose folder is gone.
    /// A folder that fails to load keeps its previous version active. Crash
    /// counters start again (the operator asked for it).
    pub fn reload(&self) -> PluginReport {
        let _one = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let mut report = PluginReport::default();
        let before = read(&self.folders);
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(&self.cfg.dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("plugin.toml").is_file())
                .collect(),
            Err(_) => Vec::new(),
        };
        entries.sort();
        let folder_of = |dir: &Path| {
            dir.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        };
        // folder → the plugin name it serves after this reload ("" = none).
        let mut after: BTreeMap<String, String> = BTreeMap::new();
        let mut errors: BTreeMap<String, String> = BTreeMap::new();
        let mut manifests: Vec<(PathBuf, String, Manifest)> = Vec::new();
        for dir in &entries {
            let folder = folder_of(dir);
            match Manifest::read(dir) {
                Ok(m) => manifests.push((dir.clone(), folder, m)),
                Err(e) => {
                    // Keep serving what this folder served before.
                    after.insert(
                        folder.clone(),
                        before.get(&folder).cloned().unwrap_or_default(),
                    );
                    errors.insert(folder, e);
                }
            }
        }
        // One folder per plugin name: the one already serving it, else the
        // folder named like the plugin, else the first in name order.
        let mut winner: BTreeMap<String, String> = BTreeMap::new();
        for (dir, folder, m) in &manifests {
            let serving = self.get(&m.name).is_some_and(|p| p.dir == *dir);
            let named = *folder == m.name;
            match winner.get(&m.name) {
                None => {
                    winner.insert(m.name.clone(), folder.clone());
                }
                Some(w) => {
                    let w_serving = self.get(&m.name).is_some_and(|p| folder_of(&p.dir) == *w);
                    if !w_serving && (serving || (named && *w != m.name)) {
                        winner.insert(m.name.clone(), folder.clone());
                    }
                }
            }
        }
        for (dir, folder, m) in manifests {
            if winner.get(&m.name) != Some(&folder) {
                let w = winner.get(&m.name).cloned().unwrap_or_default();
                errors.insert(
                    folder.clone(),
                    format!("plugin name {} is also in folder {w}, which is the one used: remove or rename one of them", m.name),
                );
                after.insert(folder, String::new());
                continue;
            }
            if let Some(cur) = self.get(&m.name) {
                let same = cur.dir == dir
                    && cur.manifest_sha256 == manifest_hash(&dir)
                    && std::fs::read(dir.join(&m.file))
                        .map(|b| hex::encode(Sha256::digest(&b)) == cur.sha256)
                        .unwrap_or(false);
                if same {
                    cur.crash_counts().clear();
                    report.unchanged.push(format!("{} {}", m.name, m.version));
                    after.insert(folder, m.name.clone());
                    continue;
                }
            }
            match self.load_package(&dir, generation) {
                Ok(p) => {
                    tracing::info!(plugin = %p.manifest.name, version = %p.manifest.version, sha256 = %&p.sha256[..12], cached = p.cached, ms = p.load_time.as_millis() as u64, generation, "plugin loaded");
                    report
                        .loaded
                        .push(format!("{} {}", p.manifest.name, p.manifest.version));
                    after.insert(folder, p.manifest.name.clone());
                    self.active
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(p.manifest.name.clone(), Arc::new(p));
                }
                Err(e) => {
                    let prev = before.get(&folder).cloned().unwrap_or_default();
                    if !prev.is_empty() && self.get(&prev).is_some() {
                        tracing::error!(plugin = %prev, "reload failed; the previous version stays active: {e}");
                    }
                    after.insert(folder.clone(), prev);
                    errors.insert(folder, e);
                }
            }
        }
        // Plugins no folder serves any more.
        let keep: Vec<&String> = after.values().filter(|n| !n.is_empty()).collect();
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
        report.failed = errors.iter().map(|(f, e)| (f.clone(), e.clone())).collect();
        *self.errors.write().unwrap_or_else(|p| p.into_inner()) = errors;
        *self.folders.write().unwrap_or_else(|p| p.into_inner()) = after;
        report
    }

    pub fn status(&self) -> Vec<PluginStatus> {
        let folders = read(&self.folders);
        let errors = read(&self.errors);
        let mut all: BTreeMap<String, PluginStatus> = BTreeMap::new();
        for (folder, name) in folders.iter().filter(|(_, n)| !n.is_empty()) {
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
                    crashes: cur
                        .as_ref()
                        .map(|p| p.crash_counts().clone())
                        .unwrap_or_default(),
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
                crashes: BTreeMap::new(),
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

/// SHA-256 of a package's plugin.toml (a manifest-only change is a change).
fn manifest_hash(dir: &Path) -> String {
    std::fs::read(dir.join("plugin.toml"))
        .map(|b| hex::encode(Sha256::digest(&b)))
        .unwrap_or_default()
}

/// Write `bytes` to `path` atomically, in a folder only this user can read.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
