//! `consign preview DELIVERY --sample FILE`: render the partner's file from
//! sample leads without queueing anything.

use super::EXIT_CONFIG;
use crate::assemble::{self, BatchMeta};
use crate::config::{Compression, Config};
use crate::deliver;
use crate::intake::{self, Format};
use crate::script::Scripts;
use anyhow::Context;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub fn run(
    cfg: &Config,
    delivery: &str,
    sample: &Path,
    records: usize,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let Some(d) = cfg.delivery(delivery) else {
        eprintln!("unknown delivery {delivery:?}");
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let recs = match read_sample(cfg.server.max_record.0 as usize, sample, records) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let meta = BatchMeta {
        id: "preview",
        delivery,
        created: chrono::Utc::now(),
        record_count: recs.len() as u64,
    };
    // What the partner's file says, readable: no compression, no encryption.
    let mut plain = d.layout.clone();
    plain.file.compression = Compression::None;
    let tmp = tempfile::tempdir().context("temporary directory")?;
    let (scripts, errors) = Scripts::load(cfg);
    if let Some(e) = errors.first() {
        eprintln!("{e}");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let (built, _) = deliver::assemble_for(&recs, &meta, &plain, d, None, tmp.path(), &scripts)?;
    let mut stdout = std::io::stdout().lock();
    for f in built.files.iter().filter(|f| f.kind == "data") {
        eprintln!(
            "==> {} ({} records, {} bytes before compression/encryption)",
            f.name, f.records, f.bytes
        );
        let bytes = std::fs::read(assemble::spool_file(tmp.path(), &meta, f.part))?;
        stdout.write_all(&bytes)?;
    }
    for r in &built.rejected {
        eprintln!("rejected: sample record {}: {}", r.record, r.reason);
    }
    if let Some(dir) = out {
        let (real, _) = deliver::assemble_for(
            &recs,
            &meta,
            &d.layout,
            d,
            d.encryption.as_ref(),
            tmp.path(),
            &scripts,
        )?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for f in &real.files {
            let dest = dir.join(&f.name);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(assemble::spool_file(tmp.path(), &meta, f.part), &dest)
                .with_context(|| format!("writing {}", dest.display()))?;
            eprintln!("wrote {} ({} bytes)", dest.display(), f.bytes);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The first `limit` records of a sample file (CSV with a header row,
/// NDJSON or JSON), as JSON object texts.
pub(crate) fn read_sample(
    max_record: usize,
    sample: &Path,
    limit: usize,
) -> Result<Vec<String>, String> {
    let Some(fmt) = Format::from_path(sample) else {
        return Err(format!(
            "{}: cannot tell the format from the extension (.csv, .ndjson, .jsonl, .json)",
            sample.display()
        ));
    };
    let mut recs: Vec<String> = Vec::new();
    let read = intake::read_file(sample, fmt, max_record, 1000, &mut |chunk, _| {
        let room = limit.saturating_sub(recs.len());
        recs.extend(chunk.into_iter().take(room));
        if recs.len() >= limit {
            return Err("enough".into());
        }
        Ok(())
    });
    match read {
        Err(e) if e.message != "enough" => Err(format!("{}: {e}", sample.display())),
        _ => Ok(recs),
    }
}
