//! The delivery worker: one attempt of one batch — verify the spool, hand the
//! files to the destination, record the attempt, and move the batch to its
//! next state with the shared retry policy. Also start-up recovery.

pub mod retry;

use crate::assemble::verify::Problem;
use crate::assemble::{self, BatchMeta};
use crate::config::{DeliveryConfig, Layout};
use crate::destination::{Destination, DestinationError, ErrorClass, OutgoingFile, Shipment};
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

/// Build a batch's files from its stored records with its snapshot layout.
fn build(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    spool_dir: &Path,
) -> Result<assemble::Assembled, assemble::AssembleError> {
    let layout = layout_of(batch, delivery)?;
    let built = assemble::assemble(
        &StoreRecords { store, batch },
        &meta(batch),
        &layout,
        delivery.encryption.as_ref(),
        spool_dir,
    )?;
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
    for r in &built.rejected {
        tracing::warn!(batch = %batch.id, record = r.record, "record left out of the file: {}", r.reason);
    }
    Ok(built)
}

/// Assemble a freshly cut (or recovered) batch and mark it `ready`.
pub fn assemble_batch(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    spool_dir: &Path,
) -> Result<Batch, DeliverError> {
    match build(store, batch, delivery, spool_dir) {
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
) -> Result<Batch, DeliverError> {
    let b = store.transition(
        batch,
        BatchState::Assembling,
        "regenerating files from stored records",
        None,
    )?;
    if batch.state != BatchState::Delivered {
        return assemble_batch(store, &b, delivery, spool_dir);
    }
    // A delivered batch is rebuilt for inspection only: it goes straight back
    // to `delivered` (never through `ready`, where a worker would send it again).
    let built = match build(store, &b, delivery, spool_dir) {
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
) -> Result<Vec<OutgoingFile>, DestinationError> {
    let perm = |m: String| DestinationError::new(ErrorClass::Permanent, m);
    let mut check = verify(store, batch, delivery, spool_dir).map_err(|e| perm(e.to_string()))?;
    if let Some(p) = check.as_ref().err().filter(|p| p.changed) {
        tracing::warn!(batch = %batch.id, "spool files missing or changed ({}); rebuilding from stored records", p.message);
        let built = build(store, batch, delivery, spool_dir).map_err(|e| perm(e.to_string()))?;
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
    let result = outgoing(store, &batch, delivery, spool_dir).and_then(|files| {
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
    match result {
        Ok(receipt) => {
            store.finish_attempt(&batch, number, "delivered", None, Some(&receipt.detail))?;
            tracing::info!(batch = %batch.id, delivery = %delivery.name, attempt = number, "delivered: {}", receipt.detail);
            let done = store.transition(&batch, BatchState::Delivered, &receipt.detail, None)?;
            // Delivered: the spool copy is no longer needed (a redelivery
            // rebuilds from the stored records while they are retained).
            let dir = spool_dir.join(&delivery.name).join(&batch.id);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::debug!(dir = %dir.display(), "could not remove spool directory: {e}");
            }
            Ok(Some(done))
        }
        Err(err) => {
            let now = Utc::now();
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
            store.finish_attempt(&batch, number, err.class.as_str(), Some(&message), None)?;
            tracing::warn!(batch = %batch.id, delivery = %delivery.name, attempt = number, "attempt failed: {message}");
            let next = match decision {
                Decision::RetryAt(at) => store.transition(
                    &batch,
                    BatchState::RetryWait,
                    &format!(
                        "attempt {number} failed ({message}); retry at {}",
                        at.to_rfc3339()
                    ),
                    Some(at),
                )?,
                Decision::Suspend => {
                    store.suspend(&delivery.name, &message, now)?;
                    tracing::error!(delivery = %delivery.name, "delivery SUSPENDED: {message}; resume with `consign deliveries resume {}`", delivery.name);
                    store.transition(
                        &batch,
                        BatchState::Suspended,
                        &format!("delivery suspended: {message}"),
                        None,
                    )?
                }
                Decision::Manual => {
                    let why = if matches!(
                        err.class,
                        ErrorClass::Connect | ErrorClass::Timeout | ErrorClass::Transient
                    ) {
                        format!("retries exhausted after {used} attempts; last error: {message}")
                    } else {
                        format!("needs an operator: {message}")
                    };
                    tracing::error!(batch = %batch.id, "batch moved to manual queue: {why}");
                    store.transition(&batch, BatchState::Manual, &why, None)?
                }
            };
            Ok(Some(next))
        }
    }
}

/// Start-up recovery: batches left `assembling` are rebuilt from their
/// records; batches left `delivering` go back to `ready` (redelivery writes
/// the same names, replacing any partial upload). Returns how many were touched.
pub fn recover(
    store: &dyn Store,
    deliveries: &[DeliveryConfig],
    spool_dir: &Path,
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
                assemble_batch(store, &b, d, spool_dir)?;
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
