//! `consign batches list|show|retry`.

use super::{batch_line, BatchesCommand, EXIT_CONFIG, EXIT_NOT_DELIVERED, EXIT_VERIFY};
use crate::engine::Engine;
use crate::store::BatchState;
use std::process::ExitCode;

pub fn run(engine: &Engine, cmd: &BatchesCommand, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        BatchesCommand::List {
            delivery,
            state,
            limit,
        } => {
            let state = match state.as_deref() {
                None => None,
                Some(s) => match BatchState::parse(s) {
                    Some(s) => Some(s),
                    None => {
                        eprintln!(
                            "unknown state {s:?}; one of: {}",
                            BatchState::ALL
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        return Ok(ExitCode::from(EXIT_CONFIG));
                    }
                },
            };
            let list = engine
                .store
                .list_batches(delivery.as_deref(), state, *limit)?;
            if json {
                println!("{}", serde_json::json!({ "batches": list }));
            } else if list.is_empty() {
                println!("no batches");
            } else {
                for b in &list {
                    println!("{}", batch_line(b));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BatchesCommand::Show { id } => {
            let b = engine.batch(id)?;
            let files = engine.store.files(&b)?;
            let attempts = engine.store.attempts(&b)?;
            let events = engine.store.events(&b)?;
            let rejected = engine.store.rejections(&b)?;
            let delivered_parts = engine.store.delivered_parts(&b)?;
            let components = engine.store.components(&b)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "batch": b, "files": files, "attempts": attempts, "events": events, "rejected": rejected, "delivered_parts": delivered_parts, "components": components })
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "batch {}  delivery {}  state {}  trigger {}",
                b.id, b.delivery, b.state, b.trigger
            );
            println!(
                "  records {}  bytes in {}  created {}",
                b.record_count,
                b.bytes,
                b.created_at.to_rfc3339()
            );
            if let Some(e) = &b.last_error {
                println!("  last error: {e}");
            }
            if let Some(r) = &b.receipt {
                println!("  receipt: {r}");
            }
            println!("  files:");
            for f in &files {
                println!(
                    "    {:<8} {}  {} bytes  {} records  sha256 {}",
                    f.kind, f.name, f.bytes, f.records, f.sha256
                );
            }
            if !delivered_parts.is_empty() {
                let out: Vec<String> = files
                    .iter()
                    .filter(|f| f.kind == "data" && !delivered_parts.contains(&f.part))
                    .map(|f| {
                        format!(
                            "{} (records {}..={})",
                            f.name,
                            f.first_record.unwrap_or(0),
                            f.last_record.unwrap_or(0)
                        )
                    })
                    .collect();
                println!(
                    "  parts accepted so far: {:?}; outstanding: {}",
                    delivered_parts,
                    if out.is_empty() {
                        "none".into()
                    } else {
                        out.join(", ")
                    }
                );
            }
            if !components.is_empty() {
                println!("  produced with:");
                for c in &components {
                    println!("    {:<7} {}  sha256 {}", c.kind, c.name, c.sha256);
                }
            }
            if !rejected.is_empty() {
                println!("  rejected records ({}):", rejected.len());
                for r in &rejected {
                    println!("    record {}: {}", r.record, r.reason);
                }
            }
            println!("  attempts:");
            let last = attempts.iter().map(|a| a.number).max();
            for a in &attempts {
                // Only the newest attempt of a batch being delivered can still
                // be running; an older one without an outcome was cut off.
                let open = if b.state == BatchState::Delivering && Some(a.number) == last {
                    "(in progress)"
                } else {
                    "(interrupted)"
                };
                println!(
                    "    #{} {} {} {}",
                    a.number,
                    a.started_at.to_rfc3339(),
                    a.outcome.as_deref().unwrap_or(open),
                    a.error.as_deref().unwrap_or("")
                );
            }
            println!("  events:");
            for e in &events {
                println!(
                    "    {} {} -> {}  {}",
                    e.at.to_rfc3339(),
                    e.from.as_deref().unwrap_or("-"),
                    e.to,
                    e.detail
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BatchesCommand::Verify { id } => match engine.verify(id)? {
            Ok(notes) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "batch": id, "ok": true, "notes": notes })
                    );
                } else {
                    println!("{id}: ok (sizes, SHA-256 and record counts match)");
                    for n in notes {
                        println!("  note: {n}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(problem) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "batch": id, "ok": false, "problem": problem })
                    );
                } else {
                    println!("{id}: FAILED: {problem}");
                }
                Ok(ExitCode::from(EXIT_VERIFY))
            }
        },
        BatchesCommand::Regenerate { id } => {
            let (_work, _) = engine.claim_work(false)?;
            let b = engine.regenerate(id)?;
            let files = engine.store.files(&b)?;
            if json {
                println!("{}", serde_json::json!({ "batch": b, "files": files }));
            } else {
                println!("{}", batch_line(&b));
                for f in &files {
                    println!(
                        "    {:<8} {}  {} bytes  sha256 {}",
                        f.kind, f.name, f.bytes, f.sha256
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BatchesCommand::Retry { id, queue_only } => {
            let (_work, _) = engine.claim_work(false)?;
            let b = engine.retry(id)?;
            if *queue_only {
                println!("{}: queued for delivery by `consign serve`", b.id);
                return Ok(ExitCode::SUCCESS);
            }
            let b = engine.attempt(&b)?.unwrap_or(b);
            if json {
                println!("{}", serde_json::json!({ "batch": b }));
            } else {
                println!("{}", batch_line(&b));
            }
            Ok(if b.state == BatchState::Delivered {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_NOT_DELIVERED)
            })
        }
    }
}
