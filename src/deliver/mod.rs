//! The delivery worker: one attempt of one batch — verify the spool, hand the
//! files to the destination, record the attempt, and move the batch to its
//! next state with the shared retry policy. Also start-up recovery.

pub mod retry;

use crate::assemble::{self, spool};
use crate::config::DeliveryConfig;
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

/// Assemble a freshly cut (or recovered) batch and mark it `ready`.
pub fn assemble_batch(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    spool_dir: &Path,
) -> Result<Batch, DeliverError> {
    match assemble::assemble(store, batch, delivery, spool_dir) {
        Ok(files) => {
            store.set_files(batch, &files)?;
            let bytes: u64 = files.iter().map(|f| f.bytes).sum();
            let detail = format!(
                "assembled {} file(s), {bytes} bytes, {} records",
                files.len(),
                batch.record_count
            );
            Ok(store.transition(batch, BatchState::Ready, &detail, None)?)
        }
        Err(e) => {
            store.transition(batch, BatchState::Failed, &e.to_string(), None)?;
            Err(e.into())
        }
    }
}

/// Spool files of a batch, checked against the sizes and hashes recorded at
/// assembly. A missing or changed spool file is rebuilt from the stored records.
fn outgoing(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    spool_dir: &Path,
) -> Result<Vec<OutgoingFile>, DestinationError> {
    let perm = |m: String| DestinationError::new(ErrorClass::Permanent, m);
    let mut files = store.files(batch).map_err(|e| perm(e.to_string()))?;
    let mut intact = !files.is_empty() && files.iter().all(|f| !f.sha256.is_empty());
    if intact {
        for f in &files {
            let p = spool::spool_path(spool_dir, &delivery.name, &batch.id, f.part);
            match spool::hash_file(&p) {
                Ok((bytes, sha)) if bytes == f.bytes && sha == f.sha256 => {}
                _ => intact = false,
            }
        }
    }
    if !intact {
        tracing::warn!(batch = %batch.id, "spool files missing or changed; rebuilding from stored records");
        files = assemble::assemble(store, batch, delivery, spool_dir)
            .map_err(|e| perm(e.to_string()))?;
        store
            .set_files(batch, &files)
            .map_err(|e| perm(e.to_string()))?;
    }
    Ok(files
        .into_iter()
        .map(|f| OutgoingFile {
            path: spool::spool_path(spool_dir, &delivery.name, &batch.id, f.part),
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
    let result = outgoing(store, &batch, delivery, spool_dir).and_then(|files| {
        dest.deliver(&Shipment {
            batch_id: batch.id.clone(),
            delivery: delivery.name.clone(),
            record_count: batch.record_count,
            files,
        })
    });
    match result {
        Ok(receipt) => {
            store.finish_attempt(&batch, number, "delivered", None, Some(&receipt.detail))?;
            tracing::info!(batch = %batch.id, delivery = %delivery.name, attempt = number, "delivered: {}", receipt.detail);
            Ok(Some(store.transition(
                &batch,
                BatchState::Delivered,
                &receipt.detail,
                None,
            )?))
        }
        Err(err) => {
            let now = Utc::now();
            let decision = retry::decide(
                &delivery.retry,
                err.class,
                number,
                now,
                rand::random::<f64>(),
            );
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
                        format!("retries exhausted after {number} attempts; last error: {message}")
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
