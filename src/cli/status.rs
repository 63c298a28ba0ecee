//! `consign status`.

use crate::engine::Engine;
use std::process::ExitCode;

pub fn run(engine: &Engine, json: bool) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    let status = engine.status(now)?;
    if json {
        println!("{}", serde_json::json!({ "deliveries": status }));
        return Ok(ExitCode::SUCCESS);
    }
    for s in &status {
        println!("{}  [{}]  -> {}", s.name, s.state, s.destination);
        if let Some(r) = &s.suspended_reason {
            println!(
                "    SUSPENDED: {r}\n    resume with: consign deliveries resume {}",
                s.name
            );
        }
        let age = s
            .oldest_age_seconds
            .map(|a| {
                format!(
                    ", oldest {}",
                    humantime::format_duration(std::time::Duration::from_secs(a.max(0) as u64))
                )
            })
            .unwrap_or_default();
        println!(
            "    pending: {} record(s), {} bytes{age}",
            s.pending.count, s.pending.bytes
        );
        match (&s.next_trigger, s.next_trigger_at) {
            (Some(t), Some(at)) => {
                let zone = engine
                    .delivery(&s.name)
                    .map(|d| d.zone())
                    .unwrap_or(chrono_tz::UTC);
                println!(
                    "    next trigger: {t} at {}",
                    at.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S %Z")
                );
            }
            (Some(t), None) => println!("    next trigger: {t}"),
            _ => println!("    next trigger: manual flush only"),
        }
        for sc in &s.scripts {
            match (&sc.sha256, &sc.error) {
                (_, Some(e)) => println!(
                    "    script {} ({}): ERROR {e}\n      (as this command compiled it; a running `serve` keeps its last good version: GET /v1/scripts)",
                    sc.path,
                    sc.roles.join(", ")
                ),
                (Some(sha), None) => println!(
                    "    script {} ({}): sha256 {}",
                    sc.path,
                    sc.roles.join(", "),
                    &sha[..12.min(sha.len())]
                ),
                (None, None) => {}
            }
        }
        if let Some(p) = &s.plugin {
            let name = p.name.as_deref().unwrap_or(&p.folder);
            match (&p.version, &p.sha256) {
                (Some(v), Some(sha)) => println!(
                    "    plugin: {name} {v} (sha256 {}, generation {}){}",
                    &sha[..12.min(sha.len())],
                    p.generation.unwrap_or(0),
                    if let Some(n) = p.crashes.get(&s.name).filter(|n| **n > 0) {
                        format!(", {n} crash(es) in a row")
                    } else {
                        String::new()
                    }
                ),
                _ => println!("    plugin: {name} NOT LOADED"),
            }
            if let Some(e) = &p.error {
                println!("    plugin reload error (previous version still serves): {e}");
            }
        }
        if !s.batches.is_empty() {
            let mut v: Vec<_> = s.batches.iter().collect();
            v.sort();
            println!(
                "    batches: {}",
                v.iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
