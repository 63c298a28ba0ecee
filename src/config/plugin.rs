//! Plugins in config: the top-level `[plugins]` table (the folder, the
//! compile cache, default limits) — a delivery names its plugin in
//! `[delivery.destination]` with `type = "plugin"`.

use super::{ByteSize, HumanDuration};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[plugins]`: where plugin packages live and the limits of their calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder of plugin packages (`*/plugin.toml`), relative to the config file.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Compiled components are cached here so start-up stays fast.
    #[serde(default = "default_cache")]
    pub cache_dir: PathBuf,
    /// Reload plugins when the folder changes (`serve` only).
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Linear memory one WASM plugin call may use.
    #[serde(default = "default_memory")]
    pub memory_limit: ByteSize,
    /// Compute time of one call (the plugin's own; HTTP waits are not counted).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Wall-clock time of one call, host calls (HTTP waits) included: a
    /// plugin that keeps calling the host never runs forever.
    #[serde(default = "default_call_timeout")]
    pub call_timeout: HumanDuration,
    /// Fuel (≈ WASM instructions) one call may burn. Off unless set.
    pub fuel: Option<u64>,
    /// Traps, deadlines or limit breaches in a row after which a plugin is
    /// no longer called (deliveries using it are suspended) until reloaded. 0 = never.
    #[serde(default = "default_crash_limit")]
    pub crash_limit: u32,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: default_dir(),
            cache_dir: default_cache(),
            watch: true,
            memory_limit: default_memory(),
            timeout: default_timeout(),
            call_timeout: default_call_timeout(),
            fuel: None,
            crash_limit: default_crash_limit(),
        }
    }
}

fn default_dir() -> PathBuf {
    PathBuf::from("plugins")
}
fn default_cache() -> PathBuf {
    PathBuf::from(".consign-cache/plugins")
}
fn default_true() -> bool {
    true
}
fn default_memory() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_call_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30 * 60))
}
fn default_crash_limit() -> u32 {
    3
}
