//! Assembly: stream a batch's records from the store through the field
//! mapping and the encoder (CSV), optionally gzip, into a spool file with its
//! size, SHA-256 and record range — in constant memory.

mod csv_out;
pub mod mapping;
pub mod naming;
pub mod spool;

use crate::config::{Compression, DeliveryConfig};
use crate::store::{Batch, BatchFile, Store, StoreError};
use csv_out::CsvEncoder;
use flate2::write::GzEncoder;
use mapping::{Column, RawRecord};
use naming::NameContext;
use spool::SpoolWriter;
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("batch {batch}: record {record} is not a JSON object: {message}")]
    BadRecord {
        batch: String,
        record: i64,
        message: String,
    },
    #[error("batch {batch}: cannot write spool file {path}: {source}")]
    Io {
        batch: String,
        path: String,
        source: std::io::Error,
    },
    #[error("batch {batch}: {source}")]
    Store { batch: String, source: StoreError },
    #[error("batch {0} has no file names (cut without names)")]
    NoFiles(String),
}

/// The file names of a batch, fixed when it is cut.
pub fn file_names(
    delivery: &DeliveryConfig,
    batch_id: &str,
    record_count: u64,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    vec![delivery.file.name.render(&NameContext {
        delivery: &delivery.name,
        batch_id,
        at,
        zone: delivery.timezone.0,
        part: 1,
        record_count,
    })]
}

/// The compiled columns of a delivery; empty when the delivery maps nothing
/// (then the columns are the keys of the first record).
pub fn columns(delivery: &DeliveryConfig) -> Vec<Column> {
    delivery
        .fields
        .iter()
        .map(|f| Column::new(&f.name, f.source.as_deref(), f.transform.clone()))
        .collect()
}

/// Build the batch's files in the spool and return what was written.
///
/// With gzip, encoding and compression run on two threads joined by a small
/// bounded channel of byte chunks, so memory stays constant and the CSV work
/// hides behind the compressor.
pub fn assemble(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    spool_dir: &Path,
) -> Result<Vec<BatchFile>, AssembleError> {
    let files = store.files(batch).map_err(|source| AssembleError::Store {
        batch: batch.id.clone(),
        source,
    })?;
    let first = files
        .first()
        .ok_or_else(|| AssembleError::NoFiles(batch.id.clone()))?;
    let path = spool::spool_path(spool_dir, &delivery.name, &batch.id, first.part);
    let io_err = |source: std::io::Error| AssembleError::Io {
        batch: batch.id.clone(),
        path: path.display().to_string(),
        source,
    };
    let out = SpoolWriter::create(&path).map_err(io_err)?;
    let (stats, bytes, sha256) = match delivery.file.compression {
        Compression::None => {
            let (out, stats) = encode(store, batch, delivery, out)?;
            let (bytes, sha) = out.finish().map_err(io_err)?;
            (stats, bytes, sha)
        }
        Compression::Gzip => {
            let level = flate2::Compression::new(delivery.file.gzip_level);
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH);
            std::thread::scope(|scope| {
                let compressor = scope.spawn(move || -> std::io::Result<(u64, String)> {
                    let mut gz = GzEncoder::new(out, level);
                    for chunk in rx {
                        gz.write_all(&chunk)?;
                    }
                    gz.finish()?.finish()
                });
                let encoded = encode(store, batch, delivery, ChunkWriter::new(tx))
                    .and_then(|(w, stats)| w.close().map(|_| stats).map_err(io_err));
                let compressed = compressor
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("compressor thread panicked")));
                match (encoded, compressed) {
                    (Ok(stats), Ok((bytes, sha))) => Ok((stats, bytes, sha)),
                    // A compressor failure (disk full…) is the root cause of a broken pipe.
                    (_, Err(e)) => Err(io_err(e)),
                    (Err(e), Ok(_)) => Err(e),
                }
            })?
        }
    };
    Ok(vec![BatchFile {
        part: first.part,
        name: first.name.clone(),
        bytes,
        sha256,
        records: stats.records,
        first_record: stats.first,
        last_record: stats.last,
    }])
}

/// Chunks in flight between the encoder and the compressor.
const PIPE_DEPTH: usize = 8;
const CHUNK: usize = 256 << 10;

#[derive(Debug, Default)]
struct EncodeStats {
    records: u64,
    first: Option<i64>,
    last: Option<i64>,
}

/// Stream the batch's records through the mapping and the CSV encoder into `out`.
fn encode<W: Write>(
    store: &dyn Store,
    batch: &Batch,
    delivery: &DeliveryConfig,
    out: W,
) -> Result<(W, EncodeStats), AssembleError> {
    let io_err = |source: std::io::Error| AssembleError::Io {
        batch: batch.id.clone(),
        path: "(encoder)".into(),
        source,
    };
    let mut enc = CsvEncoder::new(&delivery.csv, out).map_err(io_err)?;
    let mut cols = columns(delivery);
    let header = delivery.csv.header;
    let mut header_written = false;
    let mut stats = EncodeStats::default();
    let mut bad: Option<AssembleError> = None;
    let csv_err = |e: csv::Error| e.to_string();
    let result = store.for_each_record(batch, &mut |id, payload| {
        let rec = match RawRecord::parse(payload) {
            Ok(m) => m,
            Err(e) => {
                bad = Some(AssembleError::BadRecord {
                    batch: batch.id.clone(),
                    record: id,
                    message: e.to_string(),
                });
                return Err("bad record".into());
            }
        };
        if cols.is_empty() {
            cols = rec
                .keys()
                .map(|k| Column::new(k, None, Vec::new()))
                .collect();
        }
        if header && !header_written {
            for c in &cols {
                enc.field(Some(&c.name)).map_err(csv_err)?;
            }
            enc.end_record().map_err(csv_err)?;
            header_written = true;
        }
        for c in &cols {
            enc.field(c.value(&rec).as_deref()).map_err(csv_err)?;
        }
        enc.end_record().map_err(csv_err)?;
        stats.records += 1;
        stats.first.get_or_insert(id);
        stats.last = Some(id);
        Ok(())
    });
    if let Some(e) = bad {
        return Err(e);
    }
    result.map_err(|source| AssembleError::Store {
        batch: batch.id.clone(),
        source,
    })?;
    if header && !header_written && !cols.is_empty() {
        for c in &cols {
            enc.field(Some(&c.name)).map_err(|e| io_err(e.into()))?;
        }
        enc.end_record().map_err(|e| io_err(e.into()))?;
    }
    Ok((enc.into_inner().map_err(io_err)?, stats))
}

/// A writer that sends full chunks to another thread.
struct ChunkWriter {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn new(tx: std::sync::mpsc::SyncSender<Vec<u8>>) -> Self {
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(full)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "compressor stopped"))
    }

    /// Send what is left; dropping the sender ends the compressor's input.
    fn close(mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
