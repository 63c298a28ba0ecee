//! The delivery worker: one attempt of one batch — verify the spool, hand the
//! files to the destination, record the attempt, and move the batch to its
//! next state with the shared retry policy. Also start-up recovery.

pub mod retry;

use crate::assemble::verify::Problem;
use crate::assemble::{self, BatchMeta};
use crate::config::{DeliveryConfig, Layout};
use crate::destination::{Destination, DestinationError, ErrorClass, OutgoingFile, Shipment};
use crate::script::response::{self, Action};
use crate::script::transform::{TransformStep, Transformed};
use crate::script::Scripts;
use crate::store::{Batch, BatchState, Store, StoreError};
use chrono::Utc;
use retry::Decision;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Assemble(#[from] assemble::AssembleError),
}

/// A batch's records in the store, as an assembly source.
struct StoreRecords<'a> {
    store: &'a dyn Store,
    batch: &'a Batch,
}

impl assemble::RecordSource for StoreRecords<'_> {
    fn each(&self, f: &mut dyn FnMut(i64, &str) -> Result<(), String>) -> Result<(), String> {
        self.store
            .for_each_record(self.batch, f)
            .map_err(|e| e.to_string())
    }
}

/// The layout a batch was cut with (its snapshot), else the delivery's current one.
pub fn layout_of(
    batch: &Batch,
    delivery: &DeliveryConfig,
) -> Result<Layout, assemble::AssembleError> {
    let layout: Layout = match batch.layout.as_deref() {
        // Batches cut before snapshots existed.
        None => delivery.layout.clone(),
        Some(j) => serde_json::from_str(j).map_err(|e| assemble::AssembleError::Layout {
            batch: batch.id.clone(),
            message: format!("cannot read the layout snapshot taken at cut ({e}); refusing to substitute the current config"),
        })?,
    };
    match (layout.encrypted, delivery.encryption.is_some()) {
        (true, false) => Err(assemble::AssembleError::Encryption {
            batch: batch.id.clone(),
            message: "the batch was cut to be encrypted but [delivery.encryption] is no longer configured; refusing to write it in clear".into(),
        }),
        (false, true) => Err(assemble::AssembleError::Encryption {
            batch: batch.id.clone(),
            message: "the batch was cut unencrypted (its names have no .pgp) but [delivery.encryption] is configured now; regenerate would mislabel it".into(),
        }),
        _ => Ok(layout),
    }
}

fn meta(batch: &Batch) -> BatchMeta<'_> {
    BatchMeta {
        id: &batch.id,
        delivery: &batch.delivery,
        created: batch.created_at,
        record_count: batch.record_count,
    }
}

/// Assemble `source` with `layout`, through the delivery's Lua transform
/// when it has one (the version active now is used for the whole batch).
/// Returns the files and the script used. Shared by delivery and preview.
pub fn assemble_for(
    source: &dyn assemble::RecordSource,
    meta: &BatchMeta<'_>,
    layout: &Layout,
    delivery: &DeliveryConfig,
    encryption: Option<&crate::config::EncryptionConfig>,
    spool_dir: &Path,
    scripts: &Scripts,
) -> Result<
    (
        assemble::Assembled,
        Option<std::sync::Arc<crate::script::Script>>,
    ),
    assemble::AssembleError,
> {
    let (Some(path), Some(cfg)) = (delivery.script("transform"), delivery.scripts.as_ref()) else {
        return Ok((
            assemble::assemble(source, meta, layout, encryption, spool_dir)?,
            None,
        ));
    };
    let script = scripts
        .get(path)
        .ok_or_else(|| assemble::AssembleError::Layout {
            batch: meta.id.to_string(),
            message: format!(
            "transform script {path} is not loaded (it failed to compile; see `consign status`)"
        ),
        })?;
    let step = TransformStep::new(
        script.clone(),
        cfg,
        cfg.limits.unwrap_or_default(),
        assemble::columns(layout),
        meta.delivery,
        meta.id,
    );
    let transformed = Transformed::new(source, &step);
    let mut built = assemble::assemble(
        &transformed,
        meta,
        &assemble::identity_layout(layout),
        encryption,
        spool_dir,
    )?;
    built.rejected.extend(transformed.rejected());
    built.rejected.sort_by_key(|r| r.record);
    built.rejected.dedup_by_key(|r| r.record);
    Ok((built, Some(script)))
}

/// Build a batch's files from its stored records with its snapshot layout
/// (and the delivery's transform, whose hash is recorded with the batch).
fn build(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    spool_dir: &Path,
    scripts: &Scripts,
) -> Result<assemble::Assembled, assemble::AssembleError> {
    let layout = layout_of(batch, delivery)?;
    let (built, script) = assemble_for(
        &StoreRecords { store, batch },
        &meta(batch),
        &layout,
        delivery,
        delivery.encryption.as_ref(),
        spool_dir,
        scripts,
    )?;
    if let Some(script) = script {
        if let Err(e) = store.record_components(batch, &script.components()) {
            tracing::warn!(batch = %batch.id, "could not record the transform script's hash: {e}");
        }
    }
    let read: u64 = built
        .files
        .iter()
        .filter(|f| f.kind == "data")
        .map(|f| f.records)
        .sum::<u64>()
        + built.rejected.len() as u64;
    if read != batch.record_count {
        return Err(assemble::AssembleError::Source {
            batch: batch.id.clone(),
            message: format!(
                "only {read} of its {} records are still stored (purged after the retention period?); its files cannot be rebuilt",
                batch.record_count
            ),
        });
    }
    // One line for the operator; each record with its reason at debug and
    // in `consign batches show`.
    if let Some(first) = built.rejected.first() {
        tracing::warn!(
            batch = %batch.id,
            "{} record(s) left out of the file (listed by `consign batches show {}`), e.g. record {}: {}",
            built.rejected.len(),
            batch.id,
            first.record,
            first.reason
        );
    }
    for r in &built.rejected {
        tracing::debug!(batch = %batch.id, record = r.record, "record left out of the file: {}", r.reason);
    }
    Ok(built)
}

/// Assemble a freshly cut (or recovered) batch and mark it `ready`.
pub fn assemble_batch(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    spool_dir: &Path,
    scripts: &Scripts,
) -> Result<Batch, DeliverError> {
    match build(store, batch, delivery, spool_dir, scripts) {
        Ok(built) => {
            store.set_files(batch, &built.files, &built.rejected)?;
            let data: Vec<_> = built.files.iter().filter(|f| f.kind == "data").collect();
            let bytes: u64 = data.iter().map(|f| f.bytes).sum();
            let records: u64 = data.iter().map(|f| f.records).sum();
            let mut detail = format!(
                "assembled {} file(s), {bytes} bytes, {records} records",
                data.len()
            );
            if !built.rejected.is_empty() {
                detail.push_str(&format!(
                    ", {} record(s) rejected (see `consign batches show {}`)",
                    built.rejected.len(),
                    batch.id
                ));
            }
            Ok(store.transition(batch, BatchState::Ready, &detail, None)?)
        }
        Err(e) => {
            store.transition(batch, BatchState::Failed, &e.to_string(), None)?;
            Err(e.into())
        }
    }
}

/// Rebuild a batch's files from its stored records (same snapshot, same
/// names) and make it `ready` again.
pub fn regenerate(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    spool_dir: &Path,
    scripts: &Scripts,
) -> Result<Batch, DeliverError> {
    let b = store.transition(
        batch,
        BatchState::Assembling,
        "regenerating files from stored records",
        None,
    )?;
    if batch.state != BatchState::Delivered {
        return assemble_batch(store, &b, delivery, spool_dir, scripts);
    }
    // A delivered batch is rebuilt for inspection only: it goes straight back
    // to `delivered` (never through `ready`, where a worker would send it again).
    let built = match build(store, &b, delivery, spool_dir, scripts) {
        Ok(built) => built,
        Err(e) => {
            store.transition(
                &b,
                BatchState::Delivered,
                &format!("regeneration failed: {e}"),
                None,
            )?;
            return Err(e.into());
        }
    };
    store.set_files(&b, &built.files, &built.rejected)?;
    Ok(store.transition(
        &b,
        BatchState::Delivered,
        "files regenerated for inspection; not redelivered (`consign batches retry` redelivers)",
        None,
    )?)
}

/// Check a batch's spool files: hashes, then content (decrypt, decompress, parse, count).
pub fn verify(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    spool_dir: &Path,
) -> Result<Result<Vec<String>, Problem>, DeliverError> {
    let files = store.files(batch)?;
    let layout = match layout_of(batch, delivery) {
        Ok(l) => l,
        Err(e) => {
            return Ok(Err(Problem {
                message: e.to_string(),
                changed: false,
            }))
        }
    };
    let m = meta(batch);
    Ok(assemble::verify::verify(
        &layout,
        delivery.encryption.as_ref(),
        &files,
        &|n| assemble::spool_file(spool_dir, &m, n),
    ))
}

/// Spool files of a batch, verified before they leave. Files missing or
/// changed in the spool are rebuilt from the stored records once; a content
/// mismatch blocks the delivery with the reason.
fn outgoing(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    spool_dir: &Path,
    scripts: &Scripts,
) -> Result<Vec<OutgoingFile>, DestinationError> {
    let perm = |m: String| DestinationError::new(ErrorClass::Permanent, m);
    let mut check = verify(store, batch, delivery, spool_dir).map_err(|e| perm(e.to_string()))?;
    if let Some(p) = check.as_ref().err().filter(|p| p.changed) {
        tracing::warn!(batch = %batch.id, "spool files missing or changed ({}); rebuilding from stored records", p.message);
        let built =
            build(store, batch, delivery, spool_dir, scripts).map_err(|e| perm(e.to_string()))?;
        store
            .set_files(batch, &built.files, &built.rejected)
            .map_err(|e| perm(e.to_string()))?;
        check = verify(store, batch, delivery, spool_dir).map_err(|e| perm(e.to_string()))?;
    }
    if let Err(problem) = check {
        return Err(perm(format!(
            "verification failed, delivery blocked: {}",
            problem.message
        )));
    }
    let m = meta(batch);
    Ok(store
        .files(batch)
        .map_err(|e| perm(e.to_string()))?
        .into_iter()
        .map(|f| OutgoingFile {
            path: assemble::spool_file(spool_dir, &m, f.part),
            part: f.part,
            kind: f.kind,
            records: f.records,
            name: f.name,
            bytes: f.bytes,
            sha256: f.sha256,
        })
        .collect())
}

/// Make one delivery attempt of a `ready` or due `retry_wait` batch. Returns
/// the batch in its new state, or `None` when another worker claimed it.
pub fn attempt(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    dest: &dyn Destination,
    spool_dir: &Path,
    scripts: &Scripts,
) -> Result<Option<Batch>, DeliverError> {
    if let Some(s) = store.suspension(&delivery.name)? {
        tracing::debug!(delivery = %delivery.name, reason = %s.reason, "delivery suspended; batch waits");
        if batch.state != BatchState::Suspended {
            return Ok(Some(store.transition(
                batch,
                BatchState::Suspended,
                &format!("delivery suspended: {}", s.reason),
                None,
            )?));
        }
        return Ok(None);
    }
    let batch = match store.transition(
        batch,
        BatchState::Delivering,
        &format!("delivering to {}", dest.describe()),
        None,
    ) {
        Ok(b) => b,
        Err(StoreError::BadTransition { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let number = store.start_attempt(&batch)?;
    let accepted = |part: u32| {
        if let Err(e) = store.mark_parts_delivered(&batch, &[part]) {
            tracing::warn!(batch = %batch.id, part, "could not record an accepted part: {e}");
        }
    };
    let component = |c: crate::store::Component| {
        if let Err(e) = store.record_components(&batch, std::slice::from_ref(&c)) {
            tracing::warn!(batch = %batch.id, "could not record the plugin's hash: {e}");
        }
    };
    let result = outgoing(store, &batch, delivery, spool_dir, scripts).and_then(|files| {
        // Read after `outgoing`: a spool rebuild may have reset what was accepted.
        let already = store
            .delivered_parts(&batch)
            .map_err(|e| DestinationError::new(ErrorClass::Permanent, e.to_string()))?;
        let shipment = Shipment {
            batch_id: batch.id.clone(),
            delivery: delivery.name.clone(),
            record_count: batch.record_count,
            cut_at: batch.created_at,
            zone: delivery.zone(),
            files,
            already,
            accepted: Some(&accepted),
            component: Some(&component),
        };
        // A panic inside a destination (or a library it uses) fails this
        // attempt like any other error; it must not leave the batch
        // `delivering` with nobody delivering it.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dest.deliver(&shipment)))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(DestinationError::new(
                    ErrorClass::Permanent,
                    format!("the destination crashed: {what}"),
                ))
            })
    });
    // Whatever went through stays through: a retry resends only the rest.
    let went = match &result {
        Ok(r) => &r.delivered,
        Err(e) => &e.delivered,
    };
    if !went.is_empty() {
        store.mark_parts_delivered(&batch, went)?;
    }
    let now = Utc::now();
    let action = judge(store, &batch, delivery, dest, scripts, number, &result, now);
    let verdict = match (result, action) {
        (Ok(receipt), Action::Default | Action::Success) => Verdict::Delivered(receipt.detail),
        (Err(err), Action::Success) => {
            Verdict::Delivered(format!("accepted by the response handler despite: {err}"))
        }
        (Err(err), Action::Default) => {
            let used = number.saturating_sub(batch.attempt_base);
            let decision =
                match retry::decide(&delivery.retry, err.class, used, now, rand::random::<f64>()) {
                    // The partner asked for a pause (Retry-After): never sooner.
                    Decision::RetryAt(at) => Decision::RetryAt(
                        err.retry_after
                            .and_then(|w| chrono::Duration::from_std(w).ok())
                            .map_or(at, |w| at.max(now + w)),
                    ),
                    other => other,
                };
            let message = err.to_string();
            let outcome = err.class.as_str();
            match decision {
                Decision::RetryAt(at) => Verdict::RetryAt(at, outcome.into(), message),
                Decision::Suspend => Verdict::Suspend(outcome.into(), message),
                Decision::Manual => {
                    let why = if matches!(
                        err.class,
                        ErrorClass::Connect | ErrorClass::Timeout | ErrorClass::Transient
                    ) {
                        format!("retries exhausted after {used} attempts; last error: {message}")
                    } else {
                        format!("needs an operator: {message}")
                    };
                    Verdict::Manual(outcome.into(), message, why)
                }
            }
        }
        (result, action) => {
            let what = match &result {
                Ok(r) => format!("delivered ({})", r.detail),
                Err(e) => e.to_string(),
            };
            let class = result.as_ref().err().map(|e| e.class);
            scripted(delivery, &batch, number, now, class, what, action)
        }
    };
    Ok(Some(settle(
        store, &batch, delivery, spool_dir, number, verdict,
    )?))
}

/// How an attempt ends.
enum Verdict {
    Delivered(String),
    /// (time, outcome, message)
    RetryAt(chrono::DateTime<Utc>, String, String),
    Delayed(chrono::DateTime<Utc>, String),
    /// (outcome, message)
    Suspend(String, String),
    /// (outcome, message, why)
    Manual(String, String, String),
    Failed(String),
    Skipped(String),
    /// Delivered, but the partner refused these records: they are queued again.
    Partial(Vec<i64>, String),
}

/// Ask the delivery's response handler (if any) what to make of an attempt.
/// A handler that fails or is not loaded leaves the decision to the
/// built-in rules.
#[allow(clippy::too_many_arguments)]
fn judge(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    dest: &dyn Destination,
    scripts: &Scripts,
    number: u32,
    result: &Result<crate::destination::Receipt, DestinationError>,
    now: chrono::DateTime<Utc>,
) -> Action {
    let (Some(path), Some(cfg)) = (delivery.script("response"), delivery.scripts.as_ref()) else {
        return Action::Default;
    };
    let Some(script) = scripts.get(path) else {
        tracing::error!(delivery = %delivery.name, script = path, "response handler is not loaded; using the built-in rules");
        return Action::Default;
    };
    let (ok, class, message, reply) = match result {
        Ok(r) => (true, None, r.detail.clone(), r.reply.clone()),
        Err(e) => (
            false,
            Some(e.class.as_str()),
            e.message.clone(),
            e.reply.as_deref().cloned(),
        ),
    };
    let describe = dest.describe();
    let outcome = response::Outcome {
        ok,
        class,
        message: &message,
        reply: reply.as_ref(),
        attempt: number,
        batch_id: &batch.id,
        delivery: &delivery.name,
        record_count: batch.record_count,
        destination: &describe,
        zone: delivery.zone(),
        now,
    };
    if let Err(e) = store.record_components(batch, &script.components()) {
        tracing::warn!(batch = %batch.id, "could not record the response handler's hash: {e}");
    }
    match response::handle(&script, &cfg.limits.unwrap_or_default(), &outcome) {
        Ok(a) => {
            if a != Action::Default {
                tracing::info!(batch = %batch.id, script = path, "response handler: {a:?}");
            }
            a
        }
        Err(e) => {
            tracing::error!(batch = %batch.id, script = path, "response handler failed; using the built-in rules: {e}");
            Action::Default
        }
    }
}

/// The verdict for an action a response handler chose.
fn scripted(
    delivery: &DeliveryConfig,
    batch: &Batch,
    number: u32,
    now: chrono::DateTime<Utc>,
    class: Option<ErrorClass>,
    what: String,
    action: Action,
) -> Verdict {
    let by = |m: &str| format!("response handler: {m} (attempt said: {what})");
    match action {
        Action::Default | Action::Success => Verdict::Delivered(what),
        Action::Retry(after) => {
            let used = number.saturating_sub(batch.attempt_base);
            let class = class.unwrap_or(ErrorClass::Transient);
            let class = if matches!(class, ErrorClass::Connect | ErrorClass::Timeout) {
                class
            } else {
                ErrorClass::Transient
            };
            match retry::decide(&delivery.retry, class, used, now, rand::random::<f64>()) {
                Decision::RetryAt(at) => {
                    let at = after
                        .and_then(|a| chrono::Duration::from_std(a).ok())
                        .map_or(at, |a| now + a);
                    Verdict::RetryAt(at, "retry".into(), by("retry"))
                }
                _ => Verdict::Manual(
                    "retry".into(),
                    by("retry"),
                    format!("retries exhausted after {used} attempts; {}", by("retry")),
                ),
            }
        }
        Action::DelayUntil(at) => Verdict::Delayed(at, by(&format!("delay until {}", at.to_rfc3339()))),
        Action::Skip(r) => Verdict::Skipped(by(&format!("skip: {r}"))),
        Action::Reformat(r) => Verdict::Manual(
            "reformat".into(),
            by(&format!("reformat: {r}")),
            format!("REFORMAT requested by the partner: {r} (fix the layout or script, then `consign batches regenerate {}` and `retry`)", batch.id),
        ),
        Action::Suspend(r) => Verdict::Suspend("suspend".into(), by(&format!("suspend: {r}"))),
        Action::Fail(r) => Verdict::Failed(by(&format!("fail: {r}"))),
        Action::Partial { failed, reason } => Verdict::Partial(failed, reason),
    }
}

/// Record the attempt's end and move the batch to its next state.
fn settle(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    spool_dir: &Path,
    number: u32,
    verdict: Verdict,
) -> Result<Batch, DeliverError> {
    let now = Utc::now();
    let delivered = |detail: &str| -> Result<Batch, DeliverError> {
        store.finish_attempt(batch, number, "delivered", None, Some(detail))?;
        tracing::info!(batch = %batch.id, delivery = %delivery.name, attempt = number, "delivered: {detail}");
        let done = store.transition(batch, BatchState::Delivered, detail, None)?;
        // Delivered: the spool copy is no longer needed (a redelivery
        // rebuilds from the stored records while they are retained).
        let dir = spool_dir.join(&delivery.name).join(&batch.id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::debug!(dir = %dir.display(), "could not remove spool directory: {e}");
        }
        Ok(done)
    };
    Ok(match verdict {
        Verdict::Delivered(detail) => delivered(&detail)?,
        Verdict::Partial(ids, reason) => {
            let requeued = requeue(store, batch, &ids)?;
            let ignored = ids.len().saturating_sub(requeued.len());
            let detail = format!(
                "delivered; the partner refused {} record(s) ({reason}): {}; {}{}",
                ids.len(),
                preview_ids(&ids),
                if requeued.is_empty() {
                    "none queued again".to_string()
                } else {
                    format!("queued again as new record(s) {}", preview_ids(&requeued))
                },
                if ignored > 0 {
                    format!("; {ignored} id(s) are not records of this batch and were ignored")
                } else {
                    String::new()
                }
            );
            tracing::warn!(batch = %batch.id, "{detail}");
            delivered(&detail)?
        }
        Verdict::RetryAt(at, outcome, message) => {
            store.finish_attempt(batch, number, &outcome, Some(&message), None)?;
            tracing::warn!(batch = %batch.id, delivery = %delivery.name, attempt = number, "attempt failed: {message}");
            store.transition(
                batch,
                BatchState::RetryWait,
                &format!(
                    "attempt {number} failed ({message}); retry at {}",
                    at.to_rfc3339()
                ),
                Some(at),
            )?
        }
        Verdict::Delayed(at, message) => {
            store.finish_attempt(batch, number, "delayed", Some(&message), None)?;
            // A quota pause is not a failure: it does not use up retries.
            store.reset_attempt_budget(batch)?;
            tracing::warn!(batch = %batch.id, delivery = %delivery.name, "delayed until {}: {message}", at.to_rfc3339());
            store.transition(batch, BatchState::Delayed, &message, Some(at))?
        }
        Verdict::Suspend(outcome, message) => {
            store.finish_attempt(batch, number, &outcome, Some(&message), None)?;
            store.suspend(&delivery.name, &message, now)?;
            tracing::error!(delivery = %delivery.name, "delivery SUSPENDED: {message}; resume with `consign deliveries resume {}`", delivery.name);
            store.transition(
                batch,
                BatchState::Suspended,
                &format!("delivery suspended: {message}"),
                None,
            )?
        }
        Verdict::Manual(outcome, message, why) => {
            store.finish_attempt(batch, number, &outcome, Some(&message), None)?;
            tracing::error!(batch = %batch.id, "batch moved to manual queue: {why}");
            store.transition(batch, BatchState::Manual, &why, None)?
        }
        Verdict::Failed(message) => {
            store.finish_attempt(batch, number, "failed", Some(&message), None)?;
            tracing::error!(batch = %batch.id, "batch failed: {message}");
            store.transition(batch, BatchState::Failed, &message, None)?
        }
        Verdict::Skipped(message) => {
            store.finish_attempt(batch, number, "skipped", Some(&message), None)?;
            tracing::warn!(batch = %batch.id, "batch skipped: {message}");
            store.transition(batch, BatchState::Skipped, &message, None)?
        }
    })
}

/// Queue records of `batch` again (as new records of its delivery).
fn requeue(store: &dyn Store, batch: &Batch, ids: &[i64]) -> Result<Vec<i64>, DeliverError> {
    let wanted: std::collections::HashSet<i64> = ids.iter().copied().collect();
    let mut payloads = Vec::new();
    store.for_each_record(batch, &mut |id, payload| {
        if wanted.contains(&id) {
            payloads.push(payload.to_string());
        }
        Ok(())
    })?;
    if payloads.len() != wanted.len() {
        tracing::warn!(batch = %batch.id, "the response handler named {} record id(s) that are not in this batch; they are ignored", wanted.len() - payloads.len());
    }
    if payloads.is_empty() {
        return Ok(Vec::new());
    }
    Ok(store.enqueue(&batch.delivery, payloads)?)
}

fn preview_ids(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(20).map(|i| i.to_string()).collect();
    if ids.len() > 20 {
        format!("{} … ({} in all)", shown.join(", "), ids.len())
    } else {
        shown.join(", ")
    }
}

/// Start-up recovery: batches left `assembling` are rebuilt from their
/// records; batches left `delivering` go back to `ready` (redelivery writes
/// the same names, replacing any partial upload). Returns how many were touched.
pub fn recover(
    store: &dyn Store,
    deliveries: &[DeliveryConfig],
    spool_dir: &Path,
    scripts: &Scripts,
) -> Result<usize, DeliverError> {
    let mut n = 0;
    for b in store.batches_in(&[BatchState::Assembling, BatchState::Delivering])? {
        let Some(d) = deliveries.iter().find(|d| d.name == b.delivery) else {
            tracing::warn!(batch = %b.id, delivery = %b.delivery, "batch of a delivery no longer configured; left as is");
            continue;
        };
        match b.state {
            BatchState::Assembling => {
                let b = store.transition(
                    &b,
                    BatchState::Assembling,
                    "recovered after restart: reassembling",
                    None,
                )?;
                assemble_batch(store, &b, d, spool_dir, scripts)?;
            }
            _ => {
                store.transition(
                    &b,
                    BatchState::Ready,
                    "recovered after restart: interrupted delivery will be redone",
                    None,
                )?;
            }
        }
        n += 1;
    }
    Ok(n)
}
