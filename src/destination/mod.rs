//! Destinations: where assembled files go. Each one uploads and classifies
//! its failures into [`ErrorClass`]; what happens next (retry, suspend,
//! manual queue) is decided by the shared delivery worker, never here.

mod azure;
mod ftp;
mod gcs;
mod http;
mod local;
mod objects;
mod plugin;
mod s3;
mod sftp;
mod tls;

use crate::config::DestinationConfig;
use std::fmt;
use std::path::PathBuf;

pub use azure::AzureDestination;
pub use ftp::FtpDestination;
pub use gcs::GcsDestination;
pub use http::HttpDestination;
pub use local::LocalDestination;
pub use plugin::PluginDestination;
pub use s3::S3Destination;
pub use sftp::SftpDestination;

/// Failure classes shared by every destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Could not connect (refused, unreachable, DNS). Retried.
    Connect,
    /// Timed out. Retried.
    Timeout,
    /// Transfer broke off or a transient server error. Retried.
    Transient,
    /// Credentials refused. The delivery is suspended.
    Auth,
    /// The server's host key is unknown or changed. The delivery is suspended.
    HostKey,
    /// Not allowed to write there. Needs an operator: manual queue.
    Permission,
    /// Target path does not exist and may not be created. Manual queue.
    NotFound,
    /// Anything else that will not fix itself. Manual queue.
    Permanent,
    /// A plugin crashed too often in a row and is no longer called until it
    /// is reloaded. The delivery is suspended.
    PluginSuspended,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Transient => "transient",
            ErrorClass::Auth => "auth",
            ErrorClass::HostKey => "host_key",
            ErrorClass::Permission => "permission",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Permanent => "permanent",
            ErrorClass::PluginSuspended => "plugin_suspended",
        }
    }
}

/// A classified failure. The message never contains secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationError {
    pub class: ErrorClass,
    pub message: String,
    /// The partner asked to wait this long (HTTP `Retry-After`).
    pub retry_after: Option<std::time::Duration>,
    /// Files (by `part`) that did go through in this attempt.
    pub delivered: Vec<u32>,
    /// What the partner's server said, when it said something (HTTP reply,
    /// FTP reply code). Partner-response handlers (Lua) read it. Boxed:
    /// errors travel in `Result`s everywhere and should stay small.
    pub reply: Option<Box<Reply>>,
}

/// A partner server's answer to an upload, as far as the protocol has one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reply {
    /// HTTP status or FTP reply code.
    pub code: Option<u32>,
    /// Reason phrase or reply text.
    pub message: String,
    /// Reply headers (HTTP), lower-case names.
    pub headers: Vec<(String, String)>,
    /// Reply body (bounded), when there is one.
    pub body: Option<String>,
}

impl DestinationError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        DestinationError {
            class,
            message: message.into(),
            retry_after: None,
            delivered: Vec::new(),
            reply: None,
        }
    }
}

impl fmt::Display for DestinationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class.as_str(), self.message)
    }
}

impl std::error::Error for DestinationError {}

/// One file to upload: its final name and where its bytes are.
#[derive(Debug, Clone)]
pub struct OutgoingFile {
    /// Position in the batch (stable across attempts).
    pub part: u32,
    /// `data` or a sidecar kind (`sha256`, `md5`, `manifest`, `done`).
    pub kind: String,
    /// Records in the file (data files).
    pub records: u64,
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

/// What a destination is given.
pub struct Shipment<'a> {
    pub batch_id: String,
    pub delivery: String,
    pub record_count: u64,
    /// When the batch was cut, and the delivery's zone: object-key prefixes
    /// (`{year}/{month}/{day}`) are rendered from these, so every attempt
    /// uses the same keys.
    pub cut_at: chrono::DateTime<chrono::Utc>,
    pub zone: chrono_tz::Tz,
    pub files: Vec<OutgoingFile>,
    /// Parts delivered by earlier attempts: destinations that deliver file
    /// by file (HTTP chunks) skip them.
    pub already: Vec<u32>,
    /// Called as soon as a part is accepted (recorded at once, so a crash
    /// mid-batch does not resend it).
    pub accepted: Option<&'a (dyn Fn(u32) + Sync)>,
    /// Called with the code that delivers this batch (a plugin's name and
    /// SHA-256), recorded with the batch.
    pub component: Option<&'a (dyn Fn(crate::store::Component) + Sync)>,
}

impl std::fmt::Debug for Shipment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipment")
            .field("batch_id", &self.batch_id)
            .field("delivery", &self.delivery)
            .field("files", &self.files)
            .field("already", &self.already)
            .finish()
    }
}
/// Where the files ended up, for the batch record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub detail: String,
    /// Parts delivered by this attempt (when the destination tracks them).
    pub delivered: Vec<u32>,
    /// The partner's last answer, when the protocol has one.
    pub reply: Option<Reply>,
}

/// A place files are delivered to. Calls block (run them off the async executor).
pub trait Destination: Send + Sync {
    /// `sftp://user@host:22/upload` — no secrets.
    fn describe(&self) -> String;
    /// Upload every file under its final name; replacing an existing file of
    /// the same name (redelivery of the same batch) must be safe.
    fn deliver(&self, shipment: &Shipment) -> Result<Receipt, DestinationError>;
    /// Prove the destination is reachable and writable without delivering.
    fn check(&self) -> Result<String, DestinationError>;
}

/// The destination a config describes. Plugin destinations look their
/// plugin up in `plugins` at every attempt (so a reload takes effect).
pub fn build(
    cfg: &DestinationConfig,
    plugins: &std::sync::Arc<crate::plugin::Plugins>,
) -> Box<dyn Destination> {
    match cfg {
        DestinationConfig::Plugin(c) => {
            Box::new(PluginDestination::new(c.clone(), plugins.clone()))
        }
        DestinationConfig::Local(c) => Box::new(LocalDestination::new(c.clone())),
        DestinationConfig::Sftp(c) => Box::new(SftpDestination::new(c.clone())),
        DestinationConfig::Http(c) => Box::new(HttpDestination::new(c.clone())),
        DestinationConfig::Ftp(c) => Box::new(FtpDestination::new(c.clone())),
        DestinationConfig::S3(c) => Box::new(S3Destination::new(c.clone())),
        DestinationConfig::Azure(c) => Box::new(AzureDestination::new(c.clone())),
        DestinationConfig::Gcs(c) => Box::new(GcsDestination::new(c.clone())),
    }
}

/// `dir/name` on a remote file system (`.` = the login directory).
pub(crate) fn remote_path(dir: &str, name: &str) -> String {
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() {
        format!("/{name}")
    } else if dir == "." {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Every directory from the top down to `dir`: `/a/b` → `/a`, `/a/b`.
pub(crate) fn dir_prefixes(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut prefix = String::new();
    if dir.starts_with('/') {
        prefix.push('/');
    }
    for part in dir.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        prefix.push_str(part);
        out.push(prefix.clone());
    }
    out
}

/// Open a spool file for upload.
pub(crate) fn open_spool(file: &OutgoingFile) -> Result<std::fs::File, DestinationError> {
    std::fs::File::open(&file.path).map_err(|e| {
        DestinationError::new(
            io_class(&e),
            format!("cannot read spool file {}: {e}", file.path.display()),
        )
    })
}

/// Run a future to completion on a runtime of its own (destinations are
/// called on blocking threads; the object-store clients are async).
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output, DestinationError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DestinationError::new(ErrorClass::Transient, format!("runtime: {e}")))?;
    Ok(rt.block_on(fut))
}

/// Classify a local I/O error.
pub fn io_class(e: &std::io::Error) -> ErrorClass {
    use std::io::ErrorKind::*;
    match e.kind() {
        PermissionDenied | ReadOnlyFilesystem => ErrorClass::Permission,
        NotFound | NotADirectory | IsADirectory => ErrorClass::NotFound,
        TimedOut | WouldBlock => ErrorClass::Timeout,
        ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected
        | AddrNotAvailable | HostUnreachable | NetworkUnreachable => ErrorClass::Connect,
        BrokenPipe | UnexpectedEof | Interrupted | StorageFull => ErrorClass::Transient,
        _ => ErrorClass::Transient,
    }
}
