//! The durable queue and batch ledger. [`Store`] is what the engine needs from
//! storage; [`sqlite::SqliteStore`] is the embedded implementation.
//!
//! The batch state machine lives here: every change of a batch's state goes
//! through [`Store::transition`], which checks it is allowed and appends a row
//! to the batch-event table in the same transaction.

mod schema;
pub mod sqlite;
mod worklock;

use chrono::{DateTime, Utc};
use std::fmt;

pub use sqlite::SqliteStore;
pub use worklock::WorkLock;

/// Life-cycle state of a batch (see DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    Assembling,
    Ready,
    Delivering,
    Delivered,
    RetryWait,
    Suspended,
    Manual,
    Failed,
    Skipped,
    /// The partner asked to wait (quota): delivered again at `next_attempt_at`.
    Delayed,
}

impl BatchState {
    pub const ALL: [BatchState; 10] = [
        BatchState::Assembling,
        BatchState::Ready,
        BatchState::Delivering,
        BatchState::Delivered,
        BatchState::RetryWait,
        BatchState::Suspended,
        BatchState::Manual,
        BatchState::Failed,
        BatchState::Skipped,
        BatchState::Delayed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Assembling => "assembling",
            BatchState::Ready => "ready",
            BatchState::Delivering => "delivering",
            BatchState::Delivered => "delivered",
            BatchState::RetryWait => "retry_wait",
            BatchState::Suspended => "suspended",
            BatchState::Manual => "manual",
            BatchState::Failed => "failed",
            BatchState::Skipped => "skipped",
            BatchState::Delayed => "delayed",
        }
    }

    pub fn parse(s: &str) -> Option<BatchState> {
        BatchState::ALL.into_iter().find(|b| b.as_str() == s)
    }

    /// Whether the state machine allows `self -> to`.
    pub fn can_become(self, to: BatchState) -> bool {
        use BatchState::*;
        matches!(
            (self, to),
            (Assembling, Ready)
                | (Assembling, Assembling)
                | (Assembling, Failed)
                | (Ready, Delivering)
                | (Ready, Suspended)
                | (Delivering, Delivered)
                | (Delivering, RetryWait)
                | (Delivering, Suspended)
                | (Delivering, Manual)
                | (Delivering, Failed)
                | (Delivering, Skipped)
                | (Delivering, Ready)
                | (RetryWait, Delivering)
                | (RetryWait, Suspended)
                | (RetryWait, Ready)
                | (Delivering, Delayed)
                | (Delayed, Delivering)
                | (Delayed, Suspended)
                | (Delayed, Ready)
                | (Delayed, Assembling)
                | (Skipped, Ready)
                | (Suspended, Ready)
                | (Manual, Ready)
                | (Failed, Ready)
                | (Delivered, Ready)
                // regeneration of a batch's files
                | (Ready, Assembling)
                | (RetryWait, Assembling)
                | (Manual, Assembling)
                | (Failed, Assembling)
                | (Suspended, Assembling)
                | (Delivered, Assembling)
                // a delivered batch regenerated for inspection goes back as it was
                | (Assembling, Delivered)
        )
    }
}

impl fmt::Display for BatchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A script or plugin that produced or delivered a batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Component {
    /// `script`, `plugin`, ...
    pub kind: String,
    /// Script path or `plugin-name@version`.
    pub name: String,
    pub sha256: String,
}

/// A batch as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Batch {
    /// Internal row id.
    #[serde(skip)]
    pub rowid: i64,
    /// Public id, fixed at cut (`20261203-170501-000042`).
    pub id: String,
    pub delivery: String,
    pub state: BatchState,
    /// What cut the batch: `records`, `bytes`, `age`, `schedule`, `manual`.
    pub trigger: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub record_count: u64,
    pub bytes: u64,
    pub attempts: u32,
    /// Attempts made before the last operator retry (the retry budget restarts there).
    pub attempt_base: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Destination receipt of the successful delivery.
    pub receipt: Option<String>,
    /// JSON snapshot of the file layout taken at cut.
    #[serde(skip)]
    pub layout: Option<String>,
}

/// One file of a batch (names fixed at cut; size and hash after assembly).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BatchFile {
    /// Position in the batch (1-based): data files, then sidecars.
    pub part: u32,
    pub name: String,
    /// `data`, `sha256`, `md5`, `manifest` or `done`.
    pub kind: String,
    pub bytes: u64,
    pub sha256: String,
    pub md5: Option<String>,
    pub records: u64,
    pub first_record: Option<i64>,
    pub last_record: Option<i64>,
}

/// One delivery attempt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attempt {
    pub number: u32,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

/// One audited life-cycle transition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchEvent {
    pub at: DateTime<Utc>,
    pub from: Option<String>,
    pub to: String,
    pub detail: String,
}

/// What is waiting for a delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PendingStats {
    pub count: u64,
    pub bytes: u64,
    pub oldest: Option<DateTime<Utc>>,
}

/// A suspended delivery and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Suspension {
    pub delivery: String,
    pub since: DateTime<Utc>,
    pub reason: String,
}

/// What a cut needs from the caller.
pub struct CutRequest<'a> {
    pub delivery: &'a str,
    pub max_records: u64,
    pub trigger: &'a str,
    pub now: DateTime<Utc>,
    /// Cut a batch even when nothing is pending (empty-file policy).
    pub allow_empty: bool,
    /// Snapshot of the file layout (JSON), kept with the batch.
    pub layout: &'a str,
}

/// A record left out of a batch's files, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    pub record: i64,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("batch {0} not found")]
    NoBatch(String),
    #[error("batch {id} is {from}; it cannot become {to}")]
    BadTransition {
        id: String,
        from: BatchState,
        to: BatchState,
    },
    #[error("the store is shutting down")]
    Closed,
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Receives chunks of records for [`Store::import`].
pub type Pusher<'a> = &'a mut dyn FnMut(Vec<String>) -> std::result::Result<(), String>;
/// Produces records for [`Store::import`] by calling the pusher.
pub type Feed<'a> = &'a mut dyn FnMut(Pusher<'_>) -> std::result::Result<(), String>;

/// Storage used by the engine. Calls block; async callers use `spawn_blocking`.
pub trait Store: Send + Sync + 'static {
    /// Durably add records (JSON object text) to a delivery's queue. Returns
    /// their ids only after the commit. Concurrent calls share transactions.
    fn enqueue(&self, delivery: &str, records: Vec<String>) -> Result<Vec<i64>>;

    /// Durably add every record `feed` produces (it calls the pusher with
    /// chunks) in one transaction: all of them or, if the feed fails or the
    /// process dies, none. Returns (count, first id, last id).
    fn import(&self, delivery: &str, feed: Feed<'_>) -> Result<(u64, Option<i64>, Option<i64>)>;

    fn pending(&self, delivery: &str) -> Result<PendingStats>;

    /// Atomically assign up to `max_records` pending records (arrival order)
    /// to a new batch in state `assembling`. `None` when nothing is pending
    /// and `allow_empty` is false.
    fn cut(&self, req: &CutRequest<'_>) -> Result<Option<Batch>>;

    /// Stream a batch's records in id order, in constant memory.
    fn for_each_record(
        &self,
        batch: &Batch,
        f: &mut dyn FnMut(i64, &str) -> std::result::Result<(), String>,
    ) -> Result<()>;

    /// Record the assembled files and the records left out of them.
    fn set_files(&self, batch: &Batch, files: &[BatchFile], rejected: &[Rejection]) -> Result<()>;
    fn rejections(&self, batch: &Batch) -> Result<Vec<Rejection>>;
    /// Record files a destination accepted (so a retry resends only the rest).
    fn mark_parts_delivered(&self, batch: &Batch, parts: &[u32]) -> Result<()>;
    fn delivered_parts(&self, batch: &Batch) -> Result<Vec<u32>>;
    /// Forget accepted parts (an operator redelivers a delivered batch).
    fn clear_delivered_parts(&self, batch: &Batch) -> Result<()>;
    fn files(&self, batch: &Batch) -> Result<Vec<BatchFile>>;
    /// Record the scripts/plugins (with their SHA-256) used for a batch.
    /// Recording the same component twice is a no-op.
    fn record_components(&self, batch: &Batch, components: &[Component]) -> Result<()>;
    fn components(&self, batch: &Batch) -> Result<Vec<Component>>;

    /// Change state (checked against the state machine) and audit it.
    fn transition(
        &self,
        batch: &Batch,
        to: BatchState,
        detail: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<Batch>;

    fn start_attempt(&self, batch: &Batch) -> Result<u32>;
    /// Give the batch a fresh retry budget (operator retry or resume).
    fn reset_attempt_budget(&self, batch: &Batch) -> Result<()>;
    fn finish_attempt(
        &self,
        batch: &Batch,
        number: u32,
        outcome: &str,
        error: Option<&str>,
        receipt: Option<&str>,
    ) -> Result<()>;
    fn attempts(&self, batch: &Batch) -> Result<Vec<Attempt>>;
    fn events(&self, batch: &Batch) -> Result<Vec<BatchEvent>>;

    fn batch(&self, id: &str) -> Result<Option<Batch>>;
    fn list_batches(
        &self,
        delivery: Option<&str>,
        state: Option<BatchState>,
        limit: u32,
    ) -> Result<Vec<Batch>>;
    /// Batches in any of `states` (oldest first).
    fn batches_in(&self, states: &[BatchState]) -> Result<Vec<Batch>>;
    /// Batches ready now: `ready`, or `retry_wait` whose time has come.
    fn due(&self, now: DateTime<Utc>) -> Result<Vec<Batch>>;
    /// Earliest `retry_wait` time, to sleep until.
    fn next_retry_at(&self) -> Result<Option<DateTime<Utc>>>;

    fn suspend(&self, delivery: &str, reason: &str, now: DateTime<Utc>) -> Result<()>;
    /// Lift a suspension; its suspended batches become `ready`. Returns how many.
    fn resume(&self, delivery: &str) -> Result<u64>;
    fn suspension(&self, delivery: &str) -> Result<Option<Suspension>>;

    /// Delete records of batches delivered before `before`. Returns how many.
    fn purge(&self, before: DateTime<Utc>) -> Result<u64>;
}
