//! The engine: the configured deliveries wired to the store, the assembler
//! and their destinations. The CLI, the HTTP API and the serve loop all act
//! through it, so each operation has one implementation.

use crate::config::{Config, DeliveryConfig, EmptyPolicy};
use crate::deliver::{self, DeliverError};
use crate::destination::{self, Destination};
use crate::plugin::{PluginStatus, Plugins};
use crate::script::{ReloadReport, ScriptStatus, Scripts};
use crate::store::{
    Batch, BatchState, CutRequest, PendingStats, SqliteStore, Store, StoreError, WorkLock,
};
use crate::trigger::{self, Fire, TriggerTarget};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown delivery {0:?} (check the [[delivery]] names in the config)")]
    UnknownDelivery(String),
    #[error("batch {0} not found")]
    UnknownBatch(String),
    #[error("batch {id} is {state}; it is being assembled or delivered right now")]
    NotRetryable { id: String, state: BatchState },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Deliver(#[from] DeliverError),
    #[error("work lock beside the database: {0}")]
    Lock(#[from] std::io::Error),
    #[error("delivery {delivery}: {script} is not loaded, nothing was cut: {error}")]
    ScriptNotLoaded {
        delivery: String,
        script: String,
        error: String,
    },
}

pub struct Engine {
    pub config: Config,
    pub store: Arc<dyn Store>,
    spool_dir: PathBuf,
    destinations: HashMap<String, Arc<dyn Destination>>,
    /// The active version of every Lua script the deliveries name.
    pub scripts: Arc<Scripts>,
    /// The active version of every destination plugin in the plugins folder.
    pub plugins: Arc<Plugins>,
    /// Wakes the delivery worker (new ready batch, resume, retry).
    pub work: Arc<Notify>,
    /// Wakes each delivery's scheduler (new records, flush).
    pub wake: HashMap<String, Arc<Notify>>,
}

/// A delivery's state for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryStatus {
    pub name: String,
    pub destination: String,
    /// `active` or `suspended`.
    pub state: String,
    pub suspended_reason: Option<String>,
    pub pending: PendingStats,
    pub oldest_age_seconds: Option<i64>,
    /// What fires next and when (time-based triggers), e.g. `schedule`.
    pub next_trigger: Option<String>,
    pub next_trigger_at: Option<DateTime<Utc>>,
    /// Batch counts by state (only states that have batches).
    pub batches: HashMap<String, u64>,
    /// The delivery's Lua scripts: active version and last reload error.
    pub scripts: Vec<ScriptStatus>,
    /// The delivery's plugin (destination `type = "plugin"`), when it has one.
    pub plugin: Option<PluginStatus>,
}

impl Engine {
    /// Open the store and compile every script. A script that does not
    /// compile is not fatal here (`status` shows it; `serve` refuses to
    /// start; a cut that needs it refuses).
    pub fn open(config: Config) -> Result<Engine, EngineError> {
        let (scripts, errors) = Scripts::load(&config);
        for e in &errors {
            tracing::error!("{e}");
        }
        let (plugins, errors) = Plugins::load(&config.plugins);
        for e in &errors {
            tracing::error!("{e}");
        }
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.store.path)?);
        Ok(Self::with_store(
            config,
            store,
            Arc::new(scripts),
            Arc::new(plugins),
        ))
    }

    pub fn with_store(
        config: Config,
        store: Arc<dyn Store>,
        scripts: Arc<Scripts>,
        plugins: Arc<Plugins>,
    ) -> Engine {
        let destinations = config
            .deliveries
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    Arc::from(destination::build(&d.destination, &plugins)),
                )
            })
            .collect();
        let wake = config
            .deliveries
            .iter()
            .map(|d| (d.name.clone(), Arc::new(Notify::new())))
            .collect();
        Engine {
            spool_dir: config.store.spool_dir.clone(),
            config,
            store,
            destinations,
            scripts,
            plugins,
            work: Arc::new(Notify::new()),
            wake,
        }
    }

    pub fn delivery(&self, name: &str) -> Result<&DeliveryConfig, EngineError> {
        self.config
            .delivery(name)
            .ok_or_else(|| EngineError::UnknownDelivery(name.to_string()))
    }

    pub fn destination(&self, name: &str) -> Result<Arc<dyn Destination>, EngineError> {
        self.destinations
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownDelivery(name.to_string()))
    }

    pub fn batch(&self, id: &str) -> Result<Batch, EngineError> {
        self.store
            .batch(id)?
            .ok_or_else(|| EngineError::UnknownBatch(id.to_string()))
    }

    /// Durably queue records for a delivery; returns ids after the commit.
    pub fn enqueue(&self, delivery: &str, records: Vec<String>) -> Result<Vec<i64>, EngineError> {
        self.delivery(delivery)?;
        let ids = self.store.enqueue(delivery, records)?;
        if let Some(w) = self.wake.get(delivery) {
            w.notify_one();
        }
        Ok(ids)
    }

    /// Durably queue everything `feed` produces in one transaction (all or none).
    pub fn import(
        &self,
        delivery: &str,
        feed: crate::store::Feed<'_>,
    ) -> Result<(u64, Option<i64>, Option<i64>), EngineError> {
        self.delivery(delivery)?;
        let got = self.store.import(delivery, feed)?;
        if let Some(w) = self.wake.get(delivery) {
            w.notify_one();
        }
        Ok(got)
    }

    /// Cut one batch and assemble it; `None` when nothing was pending.
    pub fn cut(
        &self,
        delivery: &str,
        reason: Fire,
        allow_empty: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Batch>, EngineError> {
        let d = self.delivery(delivery)?;
        if let Some(path) = d.script("transform") {
            if self.scripts.get(path).is_none() {
                let error = self
                    .scripts
                    .status()
                    .into_iter()
                    .find(|s| s.path == path)
                    .and_then(|s| s.error)
                    .unwrap_or_else(|| "not compiled".into());
                return Err(EngineError::ScriptNotLoaded {
                    delivery: delivery.to_string(),
                    script: path.to_string(),
                    error,
                });
            }
        }
        let layout = serde_json::to_string(&d.layout)
            .map_err(|e| StoreError::Other(format!("layout snapshot: {e}")))?;
        let Some(batch) = self.store.cut(&CutRequest {
            delivery,
            max_records: d.batch.max_records,
            trigger: reason.as_str(),
            now,
            allow_empty,
            layout: &layout,
        })?
        else {
            return Ok(None);
        };
        tracing::info!(batch = %batch.id, delivery, records = batch.record_count, trigger = reason.as_str(), "batch cut");
        let batch = deliver::assemble_batch(
            self.store.as_ref(),
            &batch,
            d,
            &self.spool_dir,
            &self.scripts,
        )?;
        self.work.notify_one();
        Ok(Some(batch))
    }

    /// Manual flush: cut everything pending (in batches of at most
    /// `max_records`). With `empty = "deliver"` an empty queue still yields one
    /// empty batch.
    pub fn flush(&self, delivery: &str) -> Result<Vec<Batch>, EngineError> {
        let d = self.delivery(delivery)?;
        let now = Utc::now();
        // Only what is pending now: records arriving meanwhile wait for the
        // next trigger instead of turning one flush into many small files.
        let mut left = self.store.pending(delivery)?.count;
        let mut out = Vec::new();
        if left == 0 {
            if d.batch.empty == EmptyPolicy::Deliver {
                out.extend(self.cut(delivery, Fire::Manual, true, now)?);
            }
            return Ok(out);
        }
        while left > 0 {
            let Some(b) = self.cut(delivery, Fire::Manual, false, now)? else {
                break;
            };
            left = left.saturating_sub(b.record_count);
            out.push(b);
        }
        Ok(out)
    }

    /// One delivery attempt of a batch (if it is due and not claimed elsewhere).
    pub fn attempt(&self, batch: &Batch) -> Result<Option<Batch>, EngineError> {
        let d = self.delivery(&batch.delivery)?;
        let dest = self.destination(&batch.delivery)?;
        Ok(deliver::attempt(
            self.store.as_ref(),
            batch,
            d,
            dest.as_ref(),
            &self.spool_dir,
            &self.scripts,
        )?)
    }

    /// Batches due now whose delivery is configured and not suspended.
    pub fn due(&self, now: DateTime<Utc>) -> Result<Vec<Batch>, EngineError> {
        Ok(self
            .store
            .due(now)?
            .into_iter()
            .filter(|b| self.config.delivery(&b.delivery).is_some())
            .collect())
    }

    /// Operator retry: put a batch back in the queue for delivery now.
    pub fn retry(&self, id: &str) -> Result<Batch, EngineError> {
        let b = self.batch(id)?;
        match b.state {
            BatchState::Ready => Ok(b),
            BatchState::Manual
            | BatchState::Failed
            | BatchState::Suspended
            | BatchState::RetryWait
            | BatchState::Delayed
            | BatchState::Skipped
            | BatchState::Delivered => {
                // A fresh retry budget, except for a batch that is only
                // waiting for its next attempt ("retry now").
                if !matches!(b.state, BatchState::RetryWait | BatchState::Delayed) {
                    self.store.reset_attempt_budget(&b)?;
                }
                // Redelivering a delivered batch sends every part again.
                if b.state == BatchState::Delivered {
                    self.store.clear_delivered_parts(&b)?;
                }
                let b = self.store.transition(
                    &b,
                    BatchState::Ready,
                    "retry requested by operator",
                    None,
                )?;
                self.work.notify_one();
                Ok(b)
            }
            state => Err(EngineError::NotRetryable { id: b.id, state }),
        }
    }

    /// Rebuild a batch's files from its stored records (its snapshot layout).
    pub fn regenerate(&self, id: &str) -> Result<Batch, EngineError> {
        let b = self.batch(id)?;
        let d = self.delivery(&b.delivery)?;
        if matches!(b.state, BatchState::Assembling | BatchState::Delivering) {
            return Err(EngineError::NotRetryable {
                id: b.id,
                state: b.state,
            });
        }
        Ok(deliver::regenerate(
            self.store.as_ref(),
            &b,
            d,
            &self.spool_dir,
            &self.scripts,
        )?)
    }

    /// Verify a batch's files: `Ok(notes)` or `Err(problem)`.
    pub fn verify(&self, id: &str) -> Result<Result<Vec<String>, String>, EngineError> {
        let b = self.batch(id)?;
        let d = self.delivery(&b.delivery)?;
        if b.state == BatchState::Delivered
            && !self.spool_dir.join(&b.delivery).join(&b.id).exists()
        {
            return Ok(Ok(vec![format!(
                "{id} is delivered; its spool copy was removed after delivery, so there is nothing local to check (`consign batches regenerate {id}` rebuilds it for inspection without redelivering)"
            )]));
        }
        Ok(deliver::verify(self.store.as_ref(), &b, d, &self.spool_dir)?.map_err(|p| p.message))
    }

    /// Lift a suspension; its batches become ready.
    pub fn resume(&self, delivery: &str) -> Result<u64, EngineError> {
        self.delivery(delivery)?;
        let n = self.store.resume(delivery)?;
        self.work.notify_one();
        Ok(n)
    }

    /// Join the processes working on this store (see `store::WorkLock`).
    /// When no other process is working (with `wait`: once none is),
    /// batches a dead process left `assembling`/`delivering` are recovered
    /// first. Hold the returned lock while assembling or delivering.
    pub fn claim_work(&self, wait: bool) -> Result<(WorkLock, usize), EngineError> {
        let (lock, recovered) =
            WorkLock::acquire(&self.config.store.path, wait, || self.recover())?;
        let recovered = recovered.unwrap_or(0);
        if recovered > 0 {
            tracing::warn!(
                recovered,
                "recovered batches interrupted by an earlier stop"
            );
        }
        Ok((lock, recovered))
    }

    pub fn recover(&self) -> Result<usize, EngineError> {
        Ok(deliver::recover(
            self.store.as_ref(),
            &self.config.deliveries,
            &self.spool_dir,
            &self.scripts,
        )?)
    }

    /// Reload scripts (and plugins): changed files are compiled beside the
    /// active versions and swapped in; failures keep the last good version.
    pub fn reload(&self) -> ReloadReport {
        let mut r = self.scripts.reload();
        for (path, e) in &r.failed {
            tracing::error!(script = %path, "reload failed, previous version kept: {e}");
        }
        let p = self.plugins.reload();
        for (folder, e) in &p.failed {
            tracing::error!(plugin = %folder, "reload failed, previous version kept: {e}");
        }
        r.reloaded
            .extend(p.loaded.iter().map(|n| format!("plugin {n}")));
        r.unchanged
            .extend(p.unchanged.iter().map(|n| format!("plugin {n}")));
        r.reloaded
            .extend(p.removed.iter().map(|n| format!("plugin {n} (removed)")));
        r.failed.extend(
            p.failed
                .into_iter()
                .map(|(f, e)| (format!("plugin {f}"), e)),
        );
        tracing::info!(generation = r.generation, reloaded = ?r.reloaded, failed = r.failed.len(), "reload");
        r
    }

    /// Purge records of batches delivered longer ago than the retention period.
    pub fn purge(&self) -> Result<u64, EngineError> {
        let keep = chrono::Duration::from_std(self.config.store.retention.0)
            .unwrap_or(chrono::Duration::MAX);
        Ok(self.store.purge(Utc::now() - keep)?)
    }

    pub fn status(&self, now: DateTime<Utc>) -> Result<Vec<DeliveryStatus>, EngineError> {
        let mut out = Vec::new();
        for d in &self.config.deliveries {
            let pending = self.store.pending(&d.name)?;
            let suspension = self.store.suspension(&d.name)?;
            let next_schedule = d.trigger.schedule.as_ref().and_then(|s| s.next_after(now));
            let ev = trigger::evaluate(&d.trigger, &pending, now, next_schedule);
            let (next_trigger, next_trigger_at) = match (ev.fire, ev.next) {
                (Some(f), _) => (Some(format!("{} (due now)", f.as_str())), Some(now)),
                (None, Some((f, at))) => (Some(f.as_str().to_string()), Some(at)),
                (None, None) => match d.trigger.records {
                    Some(n) => (Some(format!("records ({} of {n})", pending.count)), None),
                    None => (None, None),
                },
            };
            let mut batches = HashMap::new();
            for b in self.store.list_batches(Some(&d.name), None, u32::MAX)? {
                *batches.entry(b.state.as_str().to_string()).or_insert(0) += 1;
            }
            out.push(DeliveryStatus {
                name: d.name.clone(),
                destination: self.destination(&d.name)?.describe(),
                state: if suspension.is_some() {
                    "suspended"
                } else {
                    "active"
                }
                .to_string(),
                suspended_reason: suspension.map(|s| s.reason),
                oldest_age_seconds: pending.oldest.map(|o| (now - o).num_seconds()),
                pending,
                next_trigger,
                next_trigger_at,
                batches,
                scripts: {
                    let all = self.scripts.status();
                    d.scripts
                        .iter()
                        .flat_map(|s| s.files())
                        .filter_map(|(_, p)| all.iter().find(|s| s.path == p).cloned())
                        .collect()
                },
                plugin: match &d.destination {
                    crate::config::DestinationConfig::Plugin(p) => self
                        .plugins
                        .status()
                        .into_iter()
                        .find(|s| s.name.as_deref() == Some(p.plugin.as_str()))
                        .map(|mut s| {
                            // This delivery's own count only.
                            s.crashes.retain(|k, _| k == &d.name);
                            s
                        }),
                    _ => None,
                },
            });
        }
        Ok(out)
    }
}

impl TriggerTarget for Engine {
    fn pending(&self, delivery: &str) -> Result<PendingStats, String> {
        self.store.pending(delivery).map_err(|e| e.to_string())
    }

    fn cut(
        &self,
        delivery: &str,
        reason: Fire,
        allow_empty: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, String> {
        Engine::cut(self, delivery, reason, allow_empty, now)
            .map(|b| b.is_some())
            .map_err(|e| e.to_string())
    }

    fn has_hook(&self, delivery: &str) -> bool {
        self.config
            .delivery(delivery)
            .is_some_and(|d| d.script("schedule").is_some())
    }

    fn ask_hook(
        &self,
        delivery: &str,
        stats: &PendingStats,
        now: DateTime<Utc>,
    ) -> Result<trigger::HookVerdict, String> {
        let d = self.delivery(delivery).map_err(|e| e.to_string())?;
        let (Some(path), Some(cfg)) = (d.script("schedule"), d.scripts.as_ref()) else {
            return Ok(trigger::HookVerdict::Nothing);
        };
        let script = self
            .scripts
            .get(path)
            .ok_or_else(|| format!("{path} is not loaded"))?;
        crate::script::schedule::ask(
            &script,
            &cfg.limits.unwrap_or_default(),
            delivery,
            stats,
            d.zone(),
            now,
        )
    }
}
