//! Typed configuration: one TOML file declares the store, the HTTP listener and
//! any number of `[[delivery]]` blocks. Every table refuses unknown keys;
//! [`load`] reports every error at once with its key path and line.

mod layout;
mod load;
mod secret;
mod units;

pub use layout::*;
pub use load::{load, load_str, ConfigError, ConfigErrors};
pub use secret::{expand, Expanded, Secret};
pub use units::{parse_duration, parse_size, ByteSize, HumanDuration};

use crate::trigger::schedule::Schedule;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (for messages and relative paths).
    pub source: PathBuf,
    pub store: StoreConfig,
    pub server: ServerConfig,
    pub deliveries: Vec<DeliveryConfig>,
}

impl Config {
    pub fn delivery(&self, name: &str) -> Option<&DeliveryConfig> {
        self.deliveries.iter().find(|d| d.name == name)
    }
}

/// `[store]`: where the durable queue lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Store engine. Only `"sqlite"` is available in this build.
    #[serde(default = "default_store_kind")]
    pub kind: StoreKind,
    /// SQLite database file (relative to the config file).
    #[serde(default = "default_db_path")]
    pub path: PathBuf,
    /// Directory for assembled files waiting for delivery.
    #[serde(default = "default_spool")]
    pub spool_dir: PathBuf,
    /// How long records of a delivered batch are kept before they are purged.
    #[serde(default = "default_retention")]
    pub retention: HumanDuration,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
}

fn default_store_kind() -> StoreKind {
    StoreKind::Sqlite
}
fn default_db_path() -> PathBuf {
    PathBuf::from("consign.db")
}
fn default_spool() -> PathBuf {
    PathBuf::from("spool")
}
fn default_retention() -> HumanDuration {
    HumanDuration(Duration::from_secs(7 * 24 * 3600))
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: default_store_kind(),
            path: default_db_path(),
            spool_dir: default_spool(),
            retention: default_retention(),
        }
    }
}

/// `[server]`: the HTTP listener (intake and admin API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest request body accepted by the intake API.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// Largest single record (its JSON text) accepted by any intake path.
    #[serde(default = "default_max_record")]
    pub max_record: ByteSize,
    /// How long `serve` waits for in-flight work after SIGTERM.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: HumanDuration,
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_string()
}
fn default_max_body() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_max_record() -> ByteSize {
    ByteSize(256 << 10)
}
fn default_shutdown_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_body: default_max_body(),
            max_record: default_max_record(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

/// One `[[delivery]]`: a partner endpoint with its triggers, file layout and transport.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub name: String,
    pub trigger: TriggerConfig,
    pub batch: BatchConfig,
    /// File layout: snapshotted with each batch when it is cut.
    pub layout: Layout,
    /// OpenPGP encryption of the delivered files (read at assembly time).
    pub encryption: Option<EncryptionConfig>,
    pub destination: DestinationConfig,
    pub retry: RetryConfig,
}

impl DeliveryConfig {
    pub fn zone(&self) -> chrono_tz::Tz {
        self.layout.timezone.0
    }
}

/// `[delivery.trigger]`: any combination; the first to fire cuts a batch.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Cut when this many records are pending.
    pub records: Option<u64>,
    /// Cut when pending records hold this many bytes (their JSON text).
    pub bytes: Option<ByteSize>,
    /// Cut when the oldest pending record is this old.
    pub max_age: Option<HumanDuration>,
    /// Standard 5-field crontab expression in the delivery's time zone.
    pub cron: Option<String>,
    /// Simple form: local time of day, `"02:00"` (with `days`).
    pub at: Option<String>,
    /// Simple form: days, e.g. `["mon-fri"]` or `["sat", "sun"]`. Default every day.
    pub days: Option<Vec<String>>,
    /// The parsed schedule (from `cron`, or `at` + `days`).
    #[serde(skip)]
    pub schedule: Option<Schedule>,
}

/// `[delivery.batch]`: limits and policies for one batch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// At most this many records go into one batch.
    #[serde(default = "default_max_records")]
    pub max_records: u64,
    /// What a scheduled trigger does when nothing is pending.
    #[serde(default)]
    pub empty: EmptyPolicy,
}

fn default_max_records() -> u64 {
    50_000
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_records: default_max_records(),
            empty: EmptyPolicy::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EmptyPolicy {
    /// Cut nothing when nothing is pending.
    #[default]
    Skip,
    /// Deliver a file with only the header row.
    Deliver,
}

/// `[delivery.destination]`: where files go.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DestinationConfig {
    Local(LocalConfig),
    Sftp(SftpConfig),
    Http(HttpConfig),
}

impl DestinationConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            DestinationConfig::Local(_) => "local",
            DestinationConfig::Sftp(_) => "sftp",
            DestinationConfig::Http(_) => "http",
        }
    }
}

/// `type = "local"`: a directory on this machine (the embedded default outbox).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    pub dir: PathBuf,
    /// Create the directory if it does not exist.
    #[serde(default = "layout::default_true")]
    pub create_dirs: bool,
}

/// `type = "sftp"`: an SSH file server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpConfig {
    pub host: Expanded,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub username: Expanded,
    pub password: Option<Secret>,
    /// Path of an OpenSSH private key.
    pub private_key: Option<PathBuf>,
    pub passphrase: Option<Secret>,
    /// known_hosts file; default `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Accept any host key. Only for one destination you have checked by other means.
    #[serde(default)]
    pub insecure_accept_any_host_key: bool,
    /// Remote directory the files are placed in.
    #[serde(default = "default_remote_dir")]
    pub remote_dir: String,
    #[serde(default = "layout::default_true")]
    pub create_dirs: bool,
    /// Suffix of the temporary name used during upload.
    #[serde(default = "default_temp_suffix")]
    pub temp_suffix: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    #[serde(default = "default_io_timeout")]
    pub io_timeout: HumanDuration,
}

fn default_ssh_port() -> u16 {
    22
}
fn default_remote_dir() -> String {
    ".".to_string()
}
fn default_temp_suffix() -> String {
    ".part".to_string()
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_io_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(120))
}

/// `type = "http"`: one request per data file (chunk: use `file.split_records`
/// with format `json` or `ndjson` for N records per request).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// URL; may use `{batch_id} {delivery} {part} {parts} {record_count} {name}`.
    pub url: Expanded,
    /// `POST` (default) or `PUT`.
    #[serde(default = "default_method")]
    pub method: String,
    pub auth: Option<HttpAuth>,
    /// Extra headers; values may use the URL placeholders.
    #[serde(default)]
    pub headers: indexmap::IndexMap<String, Expanded>,
    /// Content type of the body (default from the file: JSON, NDJSON, CSV, XML, gzip).
    pub content_type: Option<String>,
    /// Requests in flight at once.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Statuses that mean success.
    #[serde(default = "default_success")]
    pub success_status: Vec<u16>,
    /// Also require this dotted path in the JSON reply…
    pub success_json_path: Option<String>,
    /// …to have this value (compared as text: `"success"`, `true`, `1`).
    pub success_json_value: Option<String>,
    /// Header carrying a stable key per file, the same on every retry.
    #[serde(default = "default_idempotency")]
    pub idempotency_header: String,
    #[serde(default = "default_http_timeout")]
    pub timeout: HumanDuration,
    /// Extra CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Accept any TLS certificate. Only for one destination you have checked by other means.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
}

/// `auth = { type = "bearer", token = "…" }`, `{ type = "basic", username, password }`
/// or `{ type = "hmac", secret, header = "X-Signature-256", prefix = "sha256=" }`
/// (HMAC-SHA256 of the body, hex).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuth {
    Bearer {
        token: Secret,
    },
    Basic {
        username: Expanded,
        password: Secret,
    },
    Hmac {
        secret: Secret,
        #[serde(default = "default_hmac_header")]
        header: String,
        #[serde(default = "default_hmac_prefix")]
        prefix: String,
    },
}

fn default_method() -> String {
    "POST".into()
}
fn default_parallel() -> usize {
    4
}
fn default_success() -> Vec<u16> {
    vec![200, 201, 202, 204]
}
fn default_idempotency() -> String {
    "Idempotency-Key".into()
}
fn default_http_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_hmac_header() -> String {
    "X-Signature-256".into()
}
fn default_hmac_prefix() -> String {
    "sha256=".into()
}

/// `[delivery.retry]`: what happens after a failed attempt that may succeed later.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all (first try included) before the batch goes to `manual`.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_initial_delay")]
    pub initial_delay: HumanDuration,
    #[serde(default = "default_max_delay")]
    pub max_delay: HumanDuration,
    /// Growth factor of the delay between attempts.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Random spread, 0.0-1.0, applied to each delay.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

fn default_attempts() -> u32 {
    5
}
fn default_initial_delay() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_max_delay() -> HumanDuration {
    HumanDuration(Duration::from_secs(30 * 60))
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_jitter() -> f64 {
    0.2
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_attempts(),
            initial_delay: default_initial_delay(),
            max_delay: default_max_delay(),
            multiplier: default_multiplier(),
            jitter: default_jitter(),
        }
    }
}
