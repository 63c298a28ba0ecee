//! Typed configuration: one TOML file declares the store, the HTTP listener and
//! any number of `[[delivery]]` blocks. Every table refuses unknown keys;
//! [`load`] reports every error at once with its key path and line.

mod destination;
mod layout;
mod load;
mod plugin;
mod script;
mod secret;
mod units;

pub use destination::*;
pub use layout::*;
pub use load::{load, load_str, ConfigError, ConfigErrors};
pub use plugin::PluginsConfig;
pub use script::{DeliveryScripts, OnError, ScriptLimits, ScriptsConfig, TransformMode};
pub use secret::{check_http_url, expand, shown_url, Expanded, Secret};
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
    /// `[scripts]`: the Lua scripts folder and default limits.
    pub scripts: ScriptsConfig,
    /// `[plugins]`: the destination plugins folder and default limits.
    pub plugins: PluginsConfig,
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
    /// `[delivery.script]`: Lua transform, response handler, schedule hook.
    pub scripts: Option<DeliveryScripts>,
}

impl DeliveryConfig {
    pub fn zone(&self) -> chrono_tz::Tz {
        self.layout.timezone.0
    }

    /// The script named for `role` (`transform`, `response`, `schedule`).
    pub fn script(&self, role: &str) -> Option<&str> {
        let s = self.scripts.as_ref()?;
        match role {
            "transform" => s.transform.as_deref(),
            "response" => s.response.as_deref(),
            "schedule" => s.schedule.as_deref(),
            _ => None,
        }
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
