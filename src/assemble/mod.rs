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
use mapping::Column;
use naming::NameContext;
use serde_json::{Map, Value};
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
    let sink = match delivery.file.compression {
        Compression::Gzip => Sink::Gzip(Box::new(GzEncoder::new(
            out,
            flate2::Compression::new(delivery.file.gzip_level),
        ))),
        Compression::None => Sink::Plain(out),
    };
    let mut enc = CsvEncoder::new(&delivery.csv, sink).map_err(io_err)?;
    let mut cols = columns(delivery);
    let mut header_written = false;
    let mut records = 0u64;
    let mut first_id = None;
    let mut last_id = None;
    let mut bad: Option<AssembleError> = None;
    let csv_err = |e: csv::Error| e.to_string();
    let header = delivery.csv.header;
    let result = store.for_each_record(batch, &mut |id, payload| {
        let rec: Map<String, Value> = match serde_json::from_str(payload) {
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
        records += 1;
        first_id.get_or_insert(id);
        last_id = Some(id);
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
    let (bytes, sha256) = enc.into_inner().and_then(Sink::finish).map_err(io_err)?;
    Ok(vec![BatchFile {
        part: first.part,
        name: first.name.clone(),
        bytes,
        sha256,
        records,
        first_record: first_id,
        last_record: last_id,
    }])
}

/// The byte sink under the encoder: plain or gzip over the spool file.
enum Sink {
    Plain(SpoolWriter),
    Gzip(Box<GzEncoder<SpoolWriter>>),
}

impl Sink {
    fn finish(self) -> std::io::Result<(u64, String)> {
        match self {
            Sink::Plain(w) => w.finish(),
            Sink::Gzip(g) => g.finish()?.finish(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(g) => g.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(g) => g.flush(),
        }
    }
}
