//! Lua scripting in config: the top-level `[scripts]` table (where scripts
//! live, watching, default limits) and a delivery's `[delivery.script]`
//! (which scripts it uses and how).

use super::{ByteSize, HumanDuration};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[scripts]`: where Lua scripts (and the modules they `require`) live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptsConfig {
    /// Folder of the scripts (relative to the config file). `require` only
    /// loads modules from here.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Reload scripts when a file in `dir` changes (`serve` only).
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Limits of one call into a script, unless a delivery sets its own.
    #[serde(default)]
    pub limits: ScriptLimits,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        ScriptsConfig {
            dir: default_dir(),
            watch: true,
            limits: ScriptLimits::default(),
        }
    }
}

fn default_dir() -> PathBuf {
    PathBuf::from("scripts")
}
fn default_true() -> bool {
    true
}

/// Limits of one call into Lua. Breaking one is an error for that call; the
/// VM that overran is thrown away and the engine keeps serving.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScriptLimits {
    /// Memory the script's VM may hold.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// VM instructions one call may execute.
    #[serde(default = "default_instructions")]
    pub instructions: u64,
    /// Wall-clock time one call may take.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits {
            memory: default_memory(),
            instructions: default_instructions(),
            timeout: default_timeout(),
        }
    }
}

fn default_memory() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_instructions() -> u64 {
    1_000_000_000
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// `[delivery.script]`: the scripts a delivery uses (paths relative to `[scripts] dir`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeliveryScripts {
    /// Script defining `transform(record, ctx)` and/or `transform_batch(records, ctx)`.
    pub transform: Option<String>,
    /// Whether the transform sees the record after the built-in field mapping
    /// (output column names) or the record as it arrived, instead of the mapping.
    #[serde(default)]
    pub mode: TransformMode,
    /// What a transform error does to the record: `reject` it (listed in
    /// `batches show` with the reason and script line) or `fail_batch`.
    #[serde(default)]
    pub on_error: OnError,
    /// Records handed to Lua per call (the per-record `transform` is driven
    /// by a loop inside Lua; `transform_batch` receives this many at once).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Script defining `on_response(outcome, ctx)`: the partner-response handler.
    pub response: Option<String>,
    /// Script defining `next_batch(metrics)`: the schedule hook.
    pub schedule: Option<String>,
    /// Limits for this delivery's scripts (default `[scripts.limits]`).
    pub limits: Option<ScriptLimits>,
}

fn default_batch_size() -> usize {
    1024
}

impl DeliveryScripts {
    /// Every script file this delivery names, with its role.
    pub fn files(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("transform", self.transform.as_deref()),
            ("response", self.response.as_deref()),
            ("schedule", self.schedule.as_deref()),
        ]
        .into_iter()
        .filter_map(|(role, p)| p.map(|p| (role, p)))
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TransformMode {
    /// The script gets `{column = value}` after `[[delivery.field]]` mapping.
    #[default]
    AfterMapping,
    /// The script gets the record as it arrived; its result is encoded with
    /// the field names as they are (no `from`, no built-in transforms).
    InsteadOfMapping,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    #[default]
    Reject,
    FailBatch,
}
