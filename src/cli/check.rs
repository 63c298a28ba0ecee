//! `consign check [--connect] [DELIVERY]`.

use super::{load_config, EXIT_CONFIG, EXIT_UNREACHABLE};
use crate::destination;
use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path, connect: bool, only: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let Some(name) = only {
        if cfg.delivery(name).is_none() {
            eprintln!("unknown delivery {name:?}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    }
    if !connect {
        if json {
            println!(
                "{}",
                serde_json::json!({ "ok": true, "deliveries": cfg.deliveries.iter().map(|d| &d.name).collect::<Vec<_>>() })
            );
        } else {
            println!(
                "{}: ok ({} deliveries)",
                path.display(),
                cfg.deliveries.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = 0;
    let mut results = Vec::new();
    for d in cfg
        .deliveries
        .iter()
        .filter(|d| only.is_none_or(|n| n == d.name))
    {
        let dest = destination::build(&d.destination);
        match dest.check() {
            Ok(msg) => {
                if !json {
                    println!("ok    {:<16} {msg}", d.name);
                }
                results.push(serde_json::json!({ "delivery": d.name, "ok": true, "message": msg }));
            }
            Err(e) => {
                failed += 1;
                if !json {
                    println!("FAIL  {:<16} {} — {}", d.name, dest.describe(), e);
                }
                results.push(serde_json::json!({ "delivery": d.name, "ok": false, "class": e.class.as_str(), "message": e.message }));
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "ok": failed == 0, "results": results })
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_UNREACHABLE)
    })
}
