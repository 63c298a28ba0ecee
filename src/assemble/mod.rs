//! Assembly: stream a batch's records through the field mapping and the
//! format encoder, split into parts, gzip, OpenPGP, into spool files with
//! their sizes, hashes and record ranges — in constant memory — then write
//! the manifest sidecars.

pub mod encrypt;
mod format;
mod manifest;
pub mod mapping;
pub mod naming;
mod pipeline;
pub mod spool;
mod tree;
pub mod verify;

use crate::config::{Compression, EncryptionConfig, Layout};
use crate::store::BatchFile;
use chrono::{DateTime, Utc};
use format::{Encoder, PartInfo, Reject};
use mapping::RawRecord;
use naming::NameContext;
use pipeline::{DirectSink, PartSink, SinkSpec, ThreadedSink};
use spool::{FileDigest, SpoolWriter};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a batch is, for headers and names.
#[derive(Debug, Clone)]
pub struct BatchMeta<'a> {
    pub id: &'a str,
    pub delivery: &'a str,
    /// When the batch was cut: names and headers use it, so a rebuild is identical.
    pub created: DateTime<Utc>,
    pub record_count: u64,
}

/// Records in id order (the store, or sample records for a preview).
pub trait RecordSource {
    fn each(&self, f: &mut dyn FnMut(i64, &str) -> Result<(), String>) -> Result<(), String>;

    /// Whether some records may not come out (a transform drops them), so
    /// the batch's record count cannot be announced before a first pass.
    fn may_drop(&self) -> bool {
        false
    }
}

/// Sample records (preview): ids 1, 2, 3…
impl RecordSource for Vec<String> {
    fn each(&self, f: &mut dyn FnMut(i64, &str) -> Result<(), String>) -> Result<(), String> {
        for (i, r) in self.iter().enumerate() {
            f(i as i64 + 1, r)?;
        }
        Ok(())
    }
}

pub use crate::store::Rejection;

/// The files of an assembled batch (data files first, sidecars after, the
/// done marker last) and the records left out.
#[derive(Debug, Clone)]
pub struct Assembled {
    pub files: Vec<BatchFile>,
    pub rejected: Vec<Rejection>,
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("batch {batch}: record {record} is not a JSON object: {message}")]
    BadRecord {
        batch: String,
        record: i64,
        message: String,
    },
    #[error("batch {batch}: cannot write spool file {path}: {error}")]
    Io {
        batch: String,
        path: String,
        // Not `source`: the message already includes it (no doubled text in error chains).
        error: std::io::Error,
    },
    #[error("batch {batch}: reading records: {message}")]
    Source { batch: String, message: String },
    #[error("batch {batch}: layout: {message}")]
    Layout { batch: String, message: String },
    #[error("batch {batch}: encryption: {message}")]
    Encryption { batch: String, message: String },
    #[error("batch {batch}: {name} is {bytes} bytes, over split_bytes {limit}")]
    TooLarge {
        batch: String,
        name: String,
        bytes: u64,
        limit: u64,
    },
}

/// Problems with a layout: (key path under the delivery, message).
pub fn check_layout(layout: &Layout) -> Vec<(String, String)> {
    let mut out = format::check(layout);
    let f = &layout.file;
    if f.split_records == Some(0) {
        out.push(("file.split_records".into(), "must be at least 1".into()));
    }
    if let Some(b) = f.split_bytes {
        if b.0 < 4096 {
            out.push((
                "file.split_bytes".into(),
                format!("{} bytes is too small (at least 4KiB)", b.0),
            ));
        }
    }
    if f.unique_names {
        let m = &layout.manifest;
        for (key, p) in [
            ("file.name", Some(&f.name)),
            ("manifest.json", m.json.as_ref()),
            ("manifest.done", m.done.as_ref()),
        ] {
            if let Some(p) = p.filter(|p| !p.has_batch_id()) {
                out.push((
                    key.into(),
                    format!(
                        "{:?} has no {{batch_id}}: two batches could get the same name and the later one would replace the partner's earlier file; add {{batch_id}}, or set file.unique_names = false if the partner expects a fixed name",
                        p.as_str()
                    ),
                ));
            }
        }
    }
    if (f.split_records.is_some() || f.split_bytes.is_some()) && !f.name.has_part() {
        out.push((
            "file.name".into(),
            "splitting is on: the name pattern needs {part} so parts get distinct names".into(),
        ));
    }
    if let Err(e) = format::build(layout) {
        if out.is_empty() {
            out.push(("file.format".into(), e));
        }
    }
    out
}

/// The layout's output columns (name, source, built-in transforms).
pub fn columns(layout: &Layout) -> Vec<mapping::Column> {
    format::columns(layout)
}

/// The layout with every field read by its own name, untransformed: what
/// the encoder uses after a Lua transform already produced the columns.
pub fn identity_layout(layout: &Layout) -> Layout {
    let mut plain = layout.clone();
    for f in &mut plain.fields {
        f.source = None;
        f.transform.clear();
    }
    plain
}

/// Spool path of file `n` of a batch.
pub fn spool_file(spool_dir: &Path, meta: &BatchMeta<'_>, n: u32) -> PathBuf {
    spool::spool_path(spool_dir, meta.delivery, meta.id, n)
}

/// Per-part statistics while writing.
#[derive(Debug, Default, Clone)]
struct PartStat {
    records: u64,
    first: Option<i64>,
    last: Option<i64>,
}

/// How to cut parts.
struct Plan {
    max_records: Option<u64>,
    max_bytes: Option<u64>,
    /// Exact records per part, decided by a dry run.
    counts: Option<Vec<u64>>,
}

impl Plan {
    /// Records the header of part `n` (1-based) announces, `done` being written so far.
    fn planned(&self, n: u32, done: u64, total: u64) -> u64 {
        let left = total.saturating_sub(done);
        if let Some(c) = &self.counts {
            return c.get(n as usize - 1).copied().unwrap_or(left);
        }
        self.max_records.map_or(left, |m| m.min(left))
    }
}

fn io_err(meta: &BatchMeta<'_>, path: &str) -> impl Fn(std::io::Error) -> AssembleError {
    let batch = meta.id.to_string();
    let path = path.to_string();
    move |error| AssembleError::Io {
        batch: batch.clone(),
        path: path.clone(),
        error,
    }
}

/// Per-part stats, digests and rejected records of `write_parts`.
type Written = (Vec<PartStat>, Vec<FileDigest>, Vec<Rejection>);

/// Write the data parts through `sink`. Returns per-part stats, digests
/// (placeholders for a threaded sink) and the rejected records.
fn write_parts(
    source: &dyn RecordSource,
    meta: &BatchMeta<'_>,
    encoder: &mut dyn Encoder,
    plan: &Plan,
    sink: &mut dyn PartSink,
) -> Result<Written, AssembleError> {
    let err = io_err(meta, "(part)");
    let mut stats = Vec::new();
    let mut digests = Vec::new();
    let mut rejected = Vec::new();
    let mut cur = PartStat::default();
    let mut part = 1u32;
    let mut done = 0u64;
    let mut buf = Vec::with_capacity(4096);
    let mut bad = None;
    let mut io_failure = None;
    sink.open(part).map_err(&err)?;
    encoder.begin(
        &mut buf,
        &PartInfo {
            meta,
            part,
            records: plan.planned(part, 0, meta.record_count),
        },
    );
    sink.write(&buf).map_err(&err)?;
    let footer = encoder.footer_len() as u64;
    let result = source.each(&mut |id, payload| {
        let rec = match RawRecord::parse(payload) {
            Ok(r) => r,
            Err(e) => {
                bad = Some(AssembleError::BadRecord {
                    batch: meta.id.to_string(),
                    record: id,
                    message: e.to_string(),
                });
                return Err("bad record".into());
            }
        };
        buf.clear();
        if let Err(Reject(reason)) = encoder.record(&mut buf, &rec) {
            rejected.push(Rejection { record: id, reason });
            return Ok(());
        }
        let boundary = cur.records > 0
            && match (&plan.counts, plan.max_records, plan.max_bytes) {
                (Some(c), _, _) => (part as usize) < c.len() && cur.records >= c[part as usize - 1],
                (None, m, b) => {
                    m.is_some_and(|m| cur.records >= m)
                        || b.is_some_and(|b| {
                            sink.estimate(buf.len() as u64 + footer)
                                .is_some_and(|e| e > b)
                        })
                }
            };
        let mut step = || -> std::io::Result<()> {
            if boundary {
                let mut tail = Vec::new();
                encoder.end(&mut tail);
                sink.write(&tail)?;
                digests.push(sink.close()?);
                stats.push(std::mem::take(&mut cur));
                part += 1;
                sink.open(part)?;
                let mut head = Vec::new();
                encoder.begin(
                    &mut head,
                    &PartInfo {
                        meta,
                        part,
                        records: plan.planned(part, done, meta.record_count),
                    },
                );
                sink.write(&head)?;
                buf.clear();
                // Re-encode for the new part (separators depend on position).
                let _ = encoder.record(&mut buf, &rec);
            }
            sink.write(&buf)
        };
        if let Err(e) = step() {
            io_failure = Some(e);
            return Err("write failed".into());
        }
        cur.records += 1;
        done += 1;
        cur.first.get_or_insert(id);
        cur.last = Some(id);
        Ok(())
    });
    if let Some(e) = bad {
        return Err(e);
    }
    if let Some(e) = io_failure {
        return Err(err(e));
    }
    result.map_err(|message| AssembleError::Source {
        batch: meta.id.to_string(),
        message,
    })?;
    let mut tail = Vec::new();
    encoder.end(&mut tail);
    sink.write(&tail).map_err(&err)?;
    digests.push(sink.close().map_err(&err)?);
    stats.push(cur);
    Ok((stats, digests, rejected))
}

/// Build a batch's files in the spool.
pub fn assemble(
    source: &dyn RecordSource,
    meta: &BatchMeta<'_>,
    layout: &Layout,
    encryption: Option<&EncryptionConfig>,
    spool_dir: &Path,
) -> Result<Assembled, AssembleError> {
    let enc =
        match encryption {
            Some(cfg) => Some(encrypt::Encryption::load(cfg).map_err(|message| {
                AssembleError::Encryption {
                    batch: meta.id.to_string(),
                    message,
                }
            })?),
            None => None,
        };
    let build = || {
        format::build(layout).map_err(|message| AssembleError::Layout {
            batch: meta.id.to_string(),
            message,
        })
    };
    let path_of = |n: u32| spool_file(spool_dir, meta, n);
    let spec = || SinkSpec {
        compression: layout.file.compression,
        gzip_level: layout.file.gzip_level,
        encryption: enc.as_ref(),
        md5: layout.manifest.md5,
        // Sync-flush gzip often enough that unflushed input stays a small
        // share of a part (it is counted as if incompressible).
        flush_every: layout
            .file
            .split_bytes
            .map_or(u64::MAX, |b| (b.0 / 8).clamp(1024, 256 << 10)),
        path: &path_of,
    };
    let mut plan = Plan {
        max_records: layout.file.split_records,
        max_bytes: layout.file.split_bytes.map(|b| b.0),
        counts: None,
    };
    let mut encoder = build()?;
    if encoder.needs_count() && (plan.max_bytes.is_some() || source.may_drop()) {
        // Headers announce each part's count: a dry run finds the parts
        // (and the records a transform keeps) first.
        let (stats, _, _) = write_parts(
            source,
            meta,
            encoder.as_mut(),
            &plan,
            &mut DirectSink::new(spec()),
        )?;
        plan.counts = Some(stats.iter().map(|s| s.records).collect());
        encoder = build()?;
    }
    let threaded =
        plan.max_bytes.is_none() && (layout.file.compression == Compression::Gzip || enc.is_some());
    let (stats, digests, rejected) = if threaded {
        std::thread::scope(|scope| {
            let (mut sink, worker) = ThreadedSink::start(scope, spec());
            let written = write_parts(source, meta, encoder.as_mut(), &plan, &mut sink);
            sink.finish();
            let finished = worker
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("compressor thread panicked")));
            match (written, finished) {
                (Ok((s, _, r)), Ok(d)) => Ok((s, d, r)),
                // A compressor failure (disk full…) is the root cause of a broken pipe.
                (_, Err(e)) => Err(io_err(meta, "(compressor)")(e)),
                (Err(e), Ok(_)) => Err(e),
            }
        })?
    } else {
        write_parts(
            source,
            meta,
            encoder.as_mut(),
            &plan,
            &mut DirectSink::new(spec()),
        )?
    };
    let parts = stats.len() as u32;
    let mut files = Vec::new();
    for (i, (s, d)) in stats.iter().zip(digests).enumerate() {
        let part = i as u32 + 1;
        let name = layout.file.name.render(&NameContext {
            delivery: meta.delivery,
            batch_id: meta.id,
            at: meta.created,
            zone: layout.timezone.0,
            part,
            parts,
            record_count: s.records,
        });
        if let Some(limit) = plan.max_bytes {
            if d.bytes > limit {
                let _ = std::fs::remove_dir_all(spool_dir.join(meta.delivery).join(meta.id));
                let what = match (s.first, s.last) {
                    (Some(a), Some(b)) if a == b => {
                        format!("record {a} alone is larger than split_bytes and cannot be split")
                    }
                    (Some(a), Some(b)) => format!("records {a}..={b}"),
                    _ => "no records".into(),
                };
                return Err(AssembleError::TooLarge {
                    batch: meta.id.to_string(),
                    name: format!("{name} ({what})"),
                    bytes: d.bytes,
                    limit,
                });
            }
        }
        files.push(BatchFile {
            part,
            name,
            kind: "data".into(),
            bytes: d.bytes,
            sha256: d.sha256,
            md5: d.md5,
            records: s.records,
            first_record: s.first,
            last_record: s.last,
        });
    }
    let sidecars = manifest::sidecars(layout, meta, &files);
    let mut names = std::collections::HashSet::new();
    let all = files
        .iter()
        .map(|f| f.name.as_str())
        .chain(sidecars.iter().map(|(n, _, _)| n.as_str()));
    for name in all {
        if !names.insert(name.to_string()) {
            return Err(AssembleError::Layout {
                batch: meta.id.to_string(),
                message: format!(
                    "two files would both be named {name:?} (a data part and a manifest/done file, or two parts without {{part}}); one would overwrite the other"
                ),
            });
        }
    }
    for (name, kind, content) in sidecars {
        let n = files.len() as u32 + 1;
        let path = path_of(n);
        let e = io_err(meta, &path.display().to_string());
        let mut w = SpoolWriter::create_with(&path, layout.manifest.md5).map_err(&e)?;
        w.write_all(&content).map_err(&e)?;
        let d = w.finish().map_err(&e)?;
        files.push(BatchFile {
            part: n,
            name,
            kind: kind.into(),
            bytes: d.bytes,
            sha256: d.sha256,
            md5: d.md5,
            records: 0,
            first_record: None,
            last_record: None,
        });
    }
    Ok(Assembled { files, rejected })
}
