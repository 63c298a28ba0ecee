//! The WASM host: one wasmtime engine for every plugin, components compiled
//! once (and cached on disk), a fresh store and instance per call with a
//! memory limit, a compute deadline (epochs) and optional fuel, and the host
//! imports of `sdk/wit/destination.wit`.

use super::capability::Grants;
use super::{CallError, CallInput, CallLimits, Failure, Info, Outcome};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};

mod bindings {
    wasmtime::component::bindgen!({
        world: "destination",
        path: "sdk/wit",
        with: { "consign:destination/host.batch-file": super::OpenFile },
        imports: { default: trappable },
    });
}

use bindings::consign::destination::host::{self as wit_host, Level};
use bindings::consign::destination::types as wit;

/// How often the epoch advances (the deadline's resolution).
const TICK: Duration = Duration::from_millis(10);
/// Largest `batch-file.read` the host serves in one call.
const MAX_READ: u32 = 8 << 20;
/// Largest HTTP reply body handed to a plugin.
const MAX_REPLY: u64 = 16 << 20;
/// File ranges up to this size are read into memory before they are sent;
/// larger ones are streamed from the file.
const BUFFERED_RANGE: u64 = 64 << 20;
/// Batch files one call may hold open at once.
const MAX_OPEN_FILES: u32 = 64;
/// Log lines one call may write (a chatty plugin must not flood the log).
const MAX_LOG_LINES: u32 = 1000;

/// The engine shared by all WASM plugins, with its epoch ticker.
pub struct WasmHost {
    engine: Engine,
    linker: Linker<State>,
    fuel: bool,
    stop: Arc<AtomicBool>,
}

impl Drop for WasmHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl WasmHost {
    /// `fuel`: count fuel (needed when any call sets a fuel limit).
    pub fn new(fuel: bool) -> Result<WasmHost, String> {
        let mut cfg = wasmtime::Config::new();
        cfg.epoch_interruption(true);
        cfg.consume_fuel(fuel);
        cfg.wasm_component_model(true);
        let engine = Engine::new(&cfg).map_err(|e| format!("wasmtime engine: {e}"))?;
        let mut linker = Linker::<State>::new(&engine);
        bindings::Destination::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| format!("wasmtime linker: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    e.increment_epoch();
                }
            })
            .map_err(|e| format!("cannot start the plugin deadline thread: {e}"))?;
        Ok(WasmHost {
            engine,
            linker,
            fuel,
            stop,
        })
    }

    /// Compile `bytes` (or load the compiled artefact cached under
    /// `cache`), link it and call `info()` once under `limits` to prove it
    /// instantiates. Returns the plugin, its info and whether the cache was used.
    pub fn load(
        &self,
        bytes: &[u8],
        sha256: &str,
        cache: Option<&Path>,
        limits: &CallLimits,
    ) -> Result<(WasmPlugin, Info, bool), String> {
        let (component, cached) = self.compile(bytes, sha256, cache)?;
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("does not fit the consign:destination world: {}", chain(&e)))?;
        let pre = bindings::DestinationPre::new(pre)
            .map_err(|e| format!("does not export the destination world: {}", chain(&e)))?;
        let plugin = WasmPlugin {
            pre,
            engine: self.engine.clone(),
            fuel: self.fuel,
            imports,
            exports,
        };
        let info = plugin
            .info(limits)
            .map_err(|e| format!("info() failed: {e}"))?;
        Ok((plugin, info, cached))
    }

    fn compile(
        &self,
        bytes: &[u8],
        sha256: &str,
        cache: Option<&Path>,
    ) -> Result<(Component, bool), String> {
        let cached_path = cache.map(|dir| {
            // The artefact depends on the wasm bytes, wasmtime's version and the engine settings.
            let key = hex::encode(Sha256::digest(format!(
                "{sha256}/wasmtime-48.0.8/fuel={}/{}",
                self.fuel,
                std::env::consts::ARCH
            )));
            dir.join(format!("{}.cwasm", &key[..32]))
        });
        if let Some(p) = &cached_path {
            if p.is_file() {
                match deserialize(&self.engine, p) {
                    Ok(c) => return Ok((c, true)),
                    Err(e) => {
                        tracing::warn!(cache = %p.display(), "cached plugin artefact not usable, recompiling: {e}");
                    }
                }
            }
        }
        let component = Component::from_binary(&self.engine, bytes).map_err(|e| {
            format!(
                "not a valid WebAssembly component (build it with the SDK: sdk/rust/README.md): {}",
                chain(&e)
            )
        })?;
        if let Some(p) = &cached_path {
            if let Err(e) = write_cache(&component, p) {
                tracing::warn!(cache = %p.display(), "cannot cache the compiled plugin: {e}");
            }
        }
        Ok((component, false))
    }
}

/// Load a compiled artefact this process (or an earlier one) wrote to the
/// cache, after checking it against the SHA-256 recorded beside it.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> Result<Component, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let want = std::fs::read_to_string(path.with_extension("sha256"))
        .map_err(|e| format!("no checksum beside it: {e}"))?;
    if hex::encode(Sha256::digest(&bytes)) != want.trim() {
        return Err("its SHA-256 does not match the one recorded when it was written".into());
    }
    // SAFETY: wasmtime requires the bytes to be an artefact it produced with
    // a compatible engine. These are the bytes consign wrote to its private
    // cache folder (mode 0700) and checked against the hash it recorded at
    // the time; wasmtime itself checks the version and settings recorded in
    // the artefact and refuses a mismatch.
    unsafe { Component::deserialize(engine, &bytes) }.map_err(|e| chain(&e))
}

fn write_cache(component: &Component, path: &Path) -> Result<(), String> {
    let bytes = component.serialize().map_err(|e| chain(&e))?;
    super::write_private(path, &bytes).map_err(|e| e.to_string())?;
    super::write_private(
        &path.with_extension("sha256"),
        hex::encode(Sha256::digest(&bytes)).as_bytes(),
    )
    .map_err(|e| e.to_string())
}

/// A compiled, linked plugin component. Each call gets its own store and instance.
pub struct WasmPlugin {
    pre: bindings::DestinationPre<State>,
    engine: Engine,
    fuel: bool,
    /// Names the component imports and exports (for `plugin inspect`).
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Per-call host state (the store's data).
pub struct State {
    table: ResourceTable,
    memory: MemoryLimit,
    plugin: String,
    batch: String,
    config_json: String,
    config: serde_json::Map<String, serde_json::Value>,
    grants: Grants,
    /// part → (path, size) of the batch's files.
    files: Vec<(u32, PathBuf, u64)>,
    accepted: Option<Sender<u32>>,
    http: Option<reqwest::blocking::Client>,
    ca_file: Option<PathBuf>,
    started: Instant,
    /// Time spent in host calls (not charged to the plugin's deadline).
    in_host: Duration,
    budget: Duration,
    /// Wall-clock limit of the whole call.
    wall: Duration,
    log_lines: u32,
    /// The message the SDK's panic hook logged (the cause of the trap that follows).
    panic: Option<String>,
    open_files: u32,
    secrets: Vec<String>,
}

/// An open batch file (the `batch-file` resource).
pub struct OpenFile {
    file: std::fs::File,
    size: u64,
}

/// The memory limit: growing past it fails the call with [`MemoryExceeded`].
struct MemoryLimit {
    max: usize,
}

#[derive(Debug)]
struct MemoryExceeded(usize);
impl std::fmt::Display for MemoryExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "memory limit of {} bytes exceeded", self.0)
    }
}
impl std::error::Error for MemoryExceeded {}

#[derive(Debug)]
struct DeadlineExceeded(Duration);
impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "compute deadline of {:?} exceeded", self.0)
    }
}
impl std::error::Error for DeadlineExceeded {}

#[derive(Debug)]
struct CallTimeExceeded(Duration);
impl std::fmt::Display for CallTimeExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "call time limit of {} exceeded (wall clock, host calls included)",
            humantime::format_duration(self.0)
        )
    }
}
impl std::error::Error for CallTimeExceeded {}

impl wasmtime::ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            return Err(wasmtime::Error::new(MemoryExceeded(self.max)));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl WasmPlugin {
    fn store(
        &self,
        input: Option<&CallInput>,
        limits: &CallLimits,
    ) -> Result<Store<State>, String> {
        let state = State {
            table: ResourceTable::new(),
            memory: MemoryLimit {
                max: usize::try_from(limits.memory).unwrap_or(usize::MAX),
            },
            plugin: input.map(|i| i.plugin.clone()).unwrap_or_default(),
            batch: input
                .and_then(|i| i.batch.as_ref().map(|b| b.id.clone()))
                .unwrap_or_default(),
            config_json: input.map_or_else(
                || "{}".to_string(),
                |i| serde_json::Value::Object(i.config.clone()).to_string(),
            ),
            config: input.map(|i| i.config.clone()).unwrap_or_default(),
            grants: input.map(|i| i.grants.clone()).unwrap_or_default(),
            files: input
                .and_then(|i| i.batch.as_ref())
                .map(|b| {
                    b.files
                        .iter()
                        .map(|f| (f.part, f.path.clone(), f.size))
                        .collect()
                })
                .unwrap_or_default(),
            accepted: None,
            http: None,
            ca_file: input.and_then(|i| i.ca_file.clone()),
            started: Instant::now(),
            in_host: Duration::ZERO,
            budget: limits.timeout,
            wall: limits.call_timeout,
            log_lines: 0,
            panic: None,
            open_files: 0,
            secrets: input.map(|i| i.secrets.clone()).unwrap_or_default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let s = ctx.data();
            let elapsed = s.started.elapsed();
            if elapsed > s.wall {
                return Err(wasmtime::Error::new(CallTimeExceeded(s.wall)));
            }
            let used = elapsed.saturating_sub(s.in_host);
            if used > s.budget {
                Err(wasmtime::Error::new(DeadlineExceeded(s.budget)))
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        if self.fuel {
            store
                .set_fuel(limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| chain(&e))?;
        }
        Ok(store)
    }

    /// `info()` of the plugin.
    pub fn info(&self, limits: &CallLimits) -> Result<Info, CallError> {
        let mut store = self.store(None, limits).map_err(CallError::Host)?;
        let inst = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify_trap(&e, limits, None))?;
        let i = inst
            .call_info(&mut store)
            .map_err(|e| classify_trap(&e, limits, None))?;
        Ok(Info {
            name: i.name,
            version: i.version,
            description: i.description,
        })
    }

    /// `deliver(batch)` or, without a batch, `check()`.
    pub fn call(
        &self,
        input: &CallInput,
        limits: &CallLimits,
        accepted: Option<Sender<u32>>,
    ) -> Result<Outcome, CallError> {
        let mut store = self.store(Some(input), limits).map_err(CallError::Host)?;
        store.data_mut().accepted = accepted;
        let inst = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify_trap(&e, limits, None))?;
        let r = match &input.batch {
            Some(b) => {
                let batch = wit::Batch {
                    id: b.id.clone(),
                    delivery: b.delivery.clone(),
                    record_count: b.record_count,
                    cut_at: b.cut_at.clone(),
                    zone: b.zone.clone(),
                    files: b
                        .files
                        .iter()
                        .map(|f| wit::FileInfo {
                            part: f.part,
                            kind: f.kind.clone(),
                            name: f.name.clone(),
                            size: f.size,
                            sha256: f.sha256.clone(),
                            records: f.records,
                        })
                        .collect(),
                    already_delivered: b.already.clone(),
                };
                inst.call_deliver(&mut store, &batch)
                    .map_err(|e| classify_trap(&e, limits, store.data().panic.as_deref()))?
                    .map(|r| Outcome {
                        message: r.message,
                        remote_ids: r.remote_ids,
                    })
            }
            None => inst
                .call_check(&mut store)
                .map_err(|e| classify_trap(&e, limits, store.data().panic.as_deref()))?
                .map(|message| Outcome {
                    message,
                    remote_ids: Vec::new(),
                }),
        };
        r.map_err(|e| {
            CallError::Plugin(match e {
                wit::Error::Retryable(r) => Failure::Retryable {
                    message: r.message,
                    after: r.after_seconds.map(|s| Duration::from_secs(u64::from(s))),
                },
                wit::Error::Auth(m) => Failure::Auth(m),
                wit::Error::Rejected(r) => Failure::Rejected {
                    code: r.code,
                    message: r.message,
                },
                wit::Error::Permanent(m) => Failure::Permanent(m),
            })
        })
    }
}

/// A trap, deadline or limit breach, in words an operator can act on.
fn classify_trap(e: &wasmtime::Error, limits: &CallLimits, panic: Option<&str>) -> CallError {
    if let Some(m) = e.downcast_ref::<MemoryExceeded>() {
        return CallError::Memory(format!(
            "{m} (memory_limit {}; raise it for this destination or fix the plugin)",
            limits.memory
        ));
    }
    if let Some(d) = e.downcast_ref::<CallTimeExceeded>() {
        return CallError::Deadline(format!(
            "{d} ([plugins] call_timeout; the plugin kept the call going, e.g. endless HTTP requests)"
        ));
    }
    if let Some(d) = e.downcast_ref::<DeadlineExceeded>() {
        return CallError::Deadline(format!(
            "{d} (timeout; the plugin's own compute, host calls not counted)"
        ));
    }
    if let Some(t) = e.downcast_ref::<wasmtime::Trap>() {
        if *t == wasmtime::Trap::OutOfFuel {
            return CallError::Deadline(format!(
                "fuel limit of {} exhausted",
                limits.fuel.unwrap_or(0)
            ));
        }
    }
    // The cause first (a backtrace of `<wasm function N>` frames says
    // little to an operator); the whole chain goes to the debug log.
    tracing::debug!("plugin trap: {}", chain(e));
    let cause = e.root_cause().to_string();
    let cause = cause.lines().next().unwrap_or("").trim();
    CallError::Trap(match panic {
        Some(p) => format!("{cause}: {}", p.trim()),
        None => cause.to_string(),
    })
}

/// An error with its causes on one line.
fn chain(e: &wasmtime::Error) -> String {
    let mut out = String::new();
    for (i, c) in e.chain().enumerate() {
        let s = c.to_string();
        if i > 0 {
            if out.contains(&s) {
                continue;
            }
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(12)
        .collect::<Vec<_>>()
        .join(" | ")
}

impl State {
    /// Run a host call, keeping its time off the plugin's compute deadline.
    fn timed<R>(&mut self, f: impl FnOnce(&mut State) -> R) -> R {
        let t = Instant::now();
        let r = f(self);
        self.in_host += t.elapsed();
        r
    }

    fn file(&self, part: u32) -> Result<&(u32, PathBuf, u64), String> {
        self.files
            .iter()
            .find(|(p, _, _)| *p == part)
            .ok_or_else(|| {
                format!(
                    "batch {} has no part {part} (parts: {:?})",
                    self.batch,
                    self.files.iter().map(|f| f.0).collect::<Vec<_>>()
                )
            })
    }

    fn client(&mut self) -> Result<reqwest::blocking::Client, String> {
        if let Some(c) = &self.http {
            return Ok(c.clone());
        }
        let mut b = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("consign-plugin-host/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &self.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        let c = b.build().map_err(|e| format!("HTTP client: {e}"))?;
        self.http = Some(c.clone());
        Ok(c)
    }

    fn send(
        &mut self,
        req: wit_host::HttpRequest,
    ) -> Result<wit_host::HttpResponse, wit_host::HttpError> {
        use wit_host::HttpError as E;
        let url = url::Url::parse(&req.url)
            .map_err(|e| E::Other(format!("bad URL {:?}: {e}", req.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(E::Denied(format!(
                "only http and https URLs are allowed, not {}",
                url.scheme()
            )));
        }
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(0);
        self.grants.http(&host, port).map_err(E::Denied)?;
        let method = reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| E::Other(format!("bad HTTP method {:?}", req.method)))?;
        let client = self.client().map_err(E::Other)?;
        let mut rb = client.request(method, url.clone());
        for (k, v) in &req.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        // No request outlives the call's wall-clock limit.
        let left = self.wall.saturating_sub(self.started.elapsed());
        if left.is_zero() {
            return Err(E::Other(format!(
                "call time limit of {} spent; no more requests in this call",
                humantime::format_duration(self.wall)
            )));
        }
        rb = rb.timeout(
            Duration::from_millis(u64::from(req.timeout_ms.unwrap_or(60_000).max(1))).min(left),
        );
        rb = match req.body {
            wit_host::Body::Empty => rb,
            wit_host::Body::Bytes(b) => rb.body(b),
            wit_host::Body::File(r) => {
                let (_, path, size) = self.file(r.part).map_err(E::Other)?.clone();
                let start = r.offset.min(size);
                let len = r.len.min(size - start);
                let mut f = std::fs::File::open(&path)
                    .map_err(|e| E::Other(format!("cannot open part {}: {e}", r.part)))?;
                if len <= BUFFERED_RANGE {
                    // One read into memory: several times faster than a
                    // streamed reader body (small writes) for chunk-sized ranges.
                    let mut buf = vec![0u8; len as usize];
                    f.read_exact_at(&mut buf, start)
                        .map_err(|e| E::Other(format!("cannot read part {}: {e}", r.part)))?;
                    rb.body(buf)
                } else {
                    f.seek(SeekFrom::Start(start))
                        .map_err(|e| E::Other(format!("cannot seek part {}: {e}", r.part)))?;
                    rb.body(reqwest::blocking::Body::sized(f.take(len), len))
                }
            }
        };
        let resp = rb.send().map_err(|e| {
            let text = error_text(&e);
            if e.is_timeout() {
                E::Timeout(text)
            } else if text.to_ascii_lowercase().contains("certificate") {
                E::Tls(text)
            } else if e.is_connect() {
                E::Connect(text)
            } else {
                E::Other(text)
            }
        })?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        resp.take(MAX_REPLY)
            .read_to_end(&mut body)
            .map_err(|e| E::Other(format!("reading the reply from {host}: {e}")))?;
        Ok(wit_host::HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// A reqwest error with its causes, without the URL's query (it may hold a key).
fn error_text(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    if let Some(u) = e.url() {
        if u.query().is_some() {
            let mut bare = u.clone();
            bare.set_query(None);
            out = out.replace(u.as_str(), bare.as_str());
        }
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

impl wit::Host for State {}

impl wit_host::Host for State {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(plugin = %self.plugin, batch = %self.batch, "plugin log limit of {MAX_LOG_LINES} lines per call reached; further lines dropped");
            }
            return Ok(());
        }
        let message = super::tidy(&message, &self.secrets);
        if matches!(level, Level::Error) && message.starts_with("plugin panicked at ") {
            self.panic = Some(message.trim_start_matches("plugin ").to_string());
        }
        let (p, b) = (&self.plugin, &self.batch);
        match level {
            Level::Trace => tracing::trace!(plugin = %p, batch = %b, "{message}"),
            Level::Debug => tracing::debug!(plugin = %p, batch = %b, "{message}"),
            Level::Info => tracing::info!(plugin = %p, batch = %b, "{message}"),
            Level::Warn => tracing::warn!(plugin = %p, batch = %b, "{message}"),
            Level::Error => tracing::error!(plugin = %p, batch = %b, "{message}"),
        }
        Ok(())
    }

    fn config_json(&mut self) -> wasmtime::Result<String> {
        Ok(self.config_json.clone())
    }

    fn config_get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.config.get(&key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }))
    }

    fn now_unix_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(chrono::Utc::now().timestamp_millis().max(0) as u64)
    }

    fn env_var(&mut self, name: String) -> wasmtime::Result<Result<String, String>> {
        Ok(self.grants.env(&name).and_then(|()| {
            std::env::var(&name).map_err(|_| format!("environment variable {name} is not set"))
        }))
    }

    fn open_file(&mut self, part: u32) -> wasmtime::Result<Result<Resource<OpenFile>, String>> {
        let (_, path, size) = match self.file(part) {
            Ok(f) => f.clone(),
            Err(e) => return Ok(Err(e)),
        };
        if self.open_files >= MAX_OPEN_FILES {
            return Ok(Err(format!(
                "{MAX_OPEN_FILES} batch files are open already: drop one before opening another"
            )));
        }
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => return Ok(Err(format!("cannot open part {part}: {e}"))),
        };
        self.open_files += 1;
        Ok(Ok(self.table.push(OpenFile { file, size })?))
    }

    fn http_send(
        &mut self,
        request: wit_host::HttpRequest,
    ) -> wasmtime::Result<Result<wit_host::HttpResponse, wit_host::HttpError>> {
        Ok(self.timed(|s| s.send(request)))
    }

    fn part_accepted(&mut self, part: u32) -> wasmtime::Result<()> {
        if self.file(part).is_ok() {
            if let Some(tx) = &self.accepted {
                let _ = tx.send(part);
            }
        }
        Ok(())
    }
}

impl wit_host::HostBatchFile for State {
    fn read(
        &mut self,
        file: Resource<OpenFile>,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let f = self.table.get(&file)?;
        let len = u64::from(len.min(MAX_READ)).min(f.size.saturating_sub(offset));
        let mut buf = vec![0u8; len as usize];
        let mut got = 0usize;
        while got < buf.len() {
            match f.file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Ok(Err(format!("read failed: {e}"))),
            }
        }
        buf.truncate(got);
        Ok(Ok(buf))
    }

    fn drop(&mut self, file: Resource<OpenFile>) -> wasmtime::Result<()> {
        self.table.delete(file)?;
        self.open_files = self.open_files.saturating_sub(1);
        Ok(())
    }
}
