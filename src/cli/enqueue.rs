//! `consign enqueue --delivery NAME FILE...`: validate each file completely,
//! then store all its records in one transaction, with a progress bar on
//! large files. A file is queued whole or not at all.

use super::EXIT_CONFIG;
use crate::engine::Engine;
use crate::intake::{self, Format};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;

const CHUNK: usize = 5_000;
const PROGRESS_ABOVE: u64 = 4 << 20;

pub fn run(
    engine: &Engine,
    delivery: &str,
    format: Option<Format>,
    files: &[PathBuf],
    json: bool,
) -> anyhow::Result<ExitCode> {
    engine.delivery(delivery)?;
    let max_record = engine.config.server.max_record.0 as usize;
    let mut summary = Vec::new();
    for path in files {
        let Some(fmt) = format.or_else(|| Format::from_path(path)) else {
            eprintln!(
                "{}: cannot tell the format from the extension; pass --format csv|ndjson|json",
                path.display()
            );
            return Ok(ExitCode::from(EXIT_CONFIG));
        };
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let bar = if size >= PROGRESS_ABOVE && !json {
            let b = ProgressBar::new(size * 2);
            b.set_style(
                ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_message(format!("{}", path.display()));
            b
        } else {
            ProgressBar::hidden()
        };
        // Pass 1: validate everything, store nothing.
        if let Err(e) = intake::read_file(path, fmt, max_record, CHUNK, &mut |_, pos| {
            bar.set_position(pos);
            Ok(())
        }) {
            bar.abandon();
            eprintln!("{}: {e}", path.display());
            eprintln!("nothing from {} was queued", path.display());
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        // Pass 2: store everything in one transaction (all or nothing,
        // even if this process is killed half-way).
        let mut failure = None;
        let result = engine.import(delivery, &mut |push| {
            intake::read_file(path, fmt, max_record, CHUNK, &mut |chunk, pos| {
                push(chunk)?;
                bar.set_position(size + pos);
                Ok(())
            })
            .map(|_| ())
            .map_err(|e| {
                let m = e.to_string();
                failure = Some(e);
                m
            })
        });
        bar.finish_and_clear();
        let (count, first, last) = match result {
            Ok(r) => r,
            Err(e) => {
                match failure {
                    Some(f) => eprintln!("{}: {f}", path.display()),
                    None => eprintln!("{}: {e}", path.display()),
                }
                eprintln!("nothing from {} was queued", path.display());
                return Ok(ExitCode::from(super::EXIT_ERROR));
            }
        };
        if !json {
            println!(
                "{}: queued {count} record(s) for {delivery}{}",
                path.display(),
                match (first, last) {
                    (Some(a), Some(b)) => format!(" (ids {a}..={b})"),
                    _ => String::new(),
                }
            );
        }
        summary.push(serde_json::json!({ "file": path, "records": count, "first_id": first, "last_id": last }));
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "delivery": delivery, "files": summary })
        );
    }
    Ok(ExitCode::SUCCESS)
}
