//! `consign flush NAME`: cut everything pending now, assemble, and (unless
//! `--no-deliver`) make one delivery attempt per batch, and per batch of
//! NAME already waiting and due (e.g. after `deliveries resume`).

use super::{batch_line, EXIT_NOT_DELIVERED};
use crate::engine::Engine;
use crate::store::BatchState;
use std::process::ExitCode;

pub fn run(engine: &Engine, delivery: &str, deliver: bool, json: bool) -> anyhow::Result<ExitCode> {
    // Recovers what a killed `flush` left behind, when nobody else is working.
    let (_work, _) = engine.claim_work(false)?;
    let mut batches = engine.flush(delivery)?;
    if deliver {
        let waiting = engine.due(chrono::Utc::now())?;
        let cut: Vec<String> = batches.iter().map(|b| b.id.clone()).collect();
        batches.splice(
            0..0,
            waiting
                .into_iter()
                .filter(|b| b.delivery == delivery && !cut.contains(&b.id)),
        );
    }
    if batches.is_empty() {
        if json {
            println!("{}", serde_json::json!({ "batches": [] }));
        } else {
            match engine.store.suspension(delivery)? {
                Some(s) => println!(
                    "{delivery}: nothing pending; the delivery is SUSPENDED ({}): its waiting batches go out after `consign deliveries resume {delivery}`",
                    s.reason
                ),
                None => println!("{delivery}: nothing pending"),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = Vec::new();
    let mut all_delivered = true;
    for b in batches {
        let b = if deliver {
            engine.attempt(&b)?.unwrap_or(b)
        } else {
            b
        };
        if deliver && b.state != BatchState::Delivered {
            all_delivered = false;
        }
        let files = engine.store.files(&b)?;
        if !json {
            println!("{}", batch_line(&b));
            for f in &files {
                println!("    {}  {} bytes  sha256 {}", f.name, f.bytes, f.sha256);
            }
            if let Some(r) = &b.receipt {
                println!("    delivered: {r}");
            }
            if let Some(at) = b.next_attempt_at {
                println!(
                    "    next attempt at {} (by `consign serve`)",
                    at.to_rfc3339()
                );
            }
        }
        out.push(serde_json::json!({ "batch": b, "files": files }));
    }
    if json {
        println!("{}", serde_json::json!({ "batches": out }));
    }
    Ok(if all_delivered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_DELIVERED)
    })
}
