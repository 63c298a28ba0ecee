//! `consign demo`: the main job end to end on the embedded default — SQLite
//! queue, generated sample leads, CSV + gzip, a local outbox.

use crate::config;
use crate::engine::Engine;
use crate::store::BatchState;
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;

const DEMO_CONFIG: &str = r#"# Written by `consign demo`. Try: consign --config consign-demo/consign.toml status
[store]
path = "consign.db"
spool_dir = "spool"

[[delivery]]
name = "demo-partner"
timezone = "America/New_York"

[delivery.trigger]
records = 50000
max_age = "1h"

[delivery.file]
name = "leads_{date}_{time}_{batch_id}.csv.gz"
compression = "gzip"

[[delivery.field]]
name = "lead_id"
source = "Account Id"
[[delivery.field]]
name = "first_name"
source = "First Name"
[[delivery.field]]
name = "last_name"
source = "Last Name"
[[delivery.field]]
name = "company"
source = "Company"
[[delivery.field]]
name = "phone"
source = "Phone 1"
transform = ["digits_only"]
[[delivery.field]]
name = "email"
source = "Email 1"
transform = ["trim", "lowercase"]
[[delivery.field]]
name = "source"
source = "Source"
transform = ["uppercase"]

[delivery.destination]
type = "local"
dir = "outbox"
"#;

pub fn run(dir: &Path, records: u64, json: bool) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cfg_path = dir.join("consign.toml");
    std::fs::write(&cfg_path, DEMO_CONFIG)
        .with_context(|| format!("writing {}", cfg_path.display()))?;
    let sample = dir.join("sample-leads.csv");
    let file =
        std::fs::File::create(&sample).with_context(|| format!("writing {}", sample.display()))?;
    crate::sample::write_csv(std::io::BufWriter::new(file), records, 2026)
        .context("generating sample leads")?;
    let cfg = config::load(&cfg_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = Engine::open(cfg)?;
    let mut queued = 0u64;
    crate::intake::read_file(
        &sample,
        crate::intake::Format::Csv,
        1 << 20,
        5000,
        &mut |chunk, _| {
            queued += chunk.len() as u64;
            engine
                .enqueue("demo-partner", chunk)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", sample.display()))?;
    let batches = engine.flush("demo-partner")?;
    let mut out = Vec::new();
    for b in batches {
        let b = engine.attempt(&b)?.unwrap_or(b);
        let files = engine.store.files(&b)?;
        let outbox = dir.join("outbox");
        for f in &files {
            let path = outbox.join(&f.name);
            if !json {
                println!("delivered {}", path.display());
                println!(
                    "  batch {}  {} records  {} bytes (gzip)  sha256 {}",
                    b.id, f.records, f.bytes, f.sha256
                );
            }
            out.push(serde_json::json!({ "batch": b.id, "state": b.state, "file": path, "records": f.records, "bytes": f.bytes, "sha256": f.sha256 }));
        }
        if b.state != BatchState::Delivered {
            eprintln!(
                "batch {} is {}: {}",
                b.id,
                b.state,
                b.last_error.unwrap_or_default()
            );
            return Ok(ExitCode::from(super::EXIT_NOT_DELIVERED));
        }
    }
    if json {
        println!("{}", serde_json::json!({ "queued": queued, "files": out }));
    } else {
        println!("queued {queued} sample leads from {}", sample.display());
        println!("look inside: zcat {}/outbox/*.csv.gz | head", dir.display());
        println!(
            "status:      consign --config {} status",
            cfg_path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
