//! `consign script test SCRIPT --input SAMPLE [--hook H] [--delivery D]`:
//! the integrator's loop — run one hook on sample input and print what it
//! returns, without a store or a server.

use super::preview::read_sample;
use super::EXIT_CONFIG;
use crate::config::{Config, DeliveryScripts, ScriptLimits, TransformMode};
use crate::script::response::{self, Outcome};
use crate::script::schedule;
use crate::script::transform::{try_records, TransformStep};
use crate::script::Script;
use crate::store::PendingStats;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Hook {
    Transform,
    Response,
    Schedule,
}

pub struct TestArgs<'a> {
    pub script: &'a Path,
    pub input: &'a Path,
    pub hook: Hook,
    pub delivery: Option<&'a str>,
    pub records: usize,
    pub json: bool,
}

/// The scripts folder for `script`: the config's when the file is inside
/// it (so `require` finds its modules), else the file's own folder.
fn locate(cfg: Option<&Config>, script: &Path) -> (PathBuf, String) {
    let abs = std::fs::canonicalize(script).unwrap_or_else(|_| script.to_path_buf());
    if let Some(dir) = cfg.and_then(|c| std::fs::canonicalize(&c.scripts.dir).ok()) {
        if let Ok(rel) = abs.strip_prefix(&dir) {
            return (dir, rel.display().to_string());
        }
    }
    let dir = abs.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    (dir, name)
}

pub fn test(config_path: &Path, a: &TestArgs<'_>) -> anyhow::Result<ExitCode> {
    let cfg = crate::config::load(config_path).ok();
    let delivery = match (a.delivery, &cfg) {
        (Some(name), Some(c)) => match c.delivery(name) {
            Some(d) => Some(d.clone()),
            None => {
                eprintln!("unknown delivery {name:?} in {}", config_path.display());
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        },
        (Some(_), None) => {
            eprintln!(
                "--delivery needs a config that loads ({}); run `consign check`",
                config_path.display()
            );
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        _ => None,
    };
    let (dir, rel) = locate(cfg.as_ref(), a.script);
    let role = match a.hook {
        Hook::Transform => "transform",
        Hook::Response => "response",
        Hook::Schedule => "schedule",
    };
    let script = match Script::compile(&dir, &rel, &[role], 0) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    eprintln!("{} (sha256 {})", rel, &script.sha256[..16]);
    let scripts_cfg = delivery.as_ref().and_then(|d| d.scripts.clone());
    let limits: ScriptLimits = scripts_cfg
        .as_ref()
        .and_then(|s| s.limits)
        .or(cfg.as_ref().map(|c| c.scripts.limits))
        .unwrap_or_default();
    let read_json = |p: &Path| -> Result<serde_json::Value, String> {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", p.display()))
    };
    match a.hook {
        Hook::Transform => {
            let max_record = cfg
                .as_ref()
                .map_or(crate::config::ServerConfig::default().max_record.0, |c| {
                    c.server.max_record.0
                });
            let recs = match read_sample(max_record as usize, a.input, a.records) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(EXIT_CONFIG));
                }
            };
            let sc = scripts_cfg.unwrap_or(DeliveryScripts {
                mode: TransformMode::InsteadOfMapping,
                batch_size: 1024,
                ..Default::default()
            });
            let columns = delivery
                .as_ref()
                .map(|d| crate::assemble::columns(&d.layout))
                .unwrap_or_default();
            let name = delivery.as_ref().map_or("test", |d| d.name.as_str());
            let step = TransformStep::new(script, &sc, limits, columns, name, "test");
            let results = try_records(&step, &recs);
            let mut failed = 0;
            for (i, (input, r)) in recs.iter().zip(&results).enumerate() {
                match r {
                    Ok(out) if a.json => println!("{out}"),
                    Ok(out) => println!("record {}:\n  in:  {input}\n  out: {out}", i + 1),
                    Err(e) => {
                        failed += 1;
                        if a.json {
                            println!("{}", serde_json::json!({ "record": i + 1, "rejected": e }));
                        } else {
                            println!("record {}:\n  in:  {input}\n  REJECTED: {e}", i + 1);
                        }
                    }
                }
            }
            eprintln!(
                "{} record(s): {} out, {failed} rejected",
                results.len(),
                results.len() - failed
            );
        }
        Hook::Response => {
            let v = match read_json(a.input) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(EXIT_CONFIG));
                }
            };
            let reply = crate::destination::Reply {
                code: v["status"]
                    .as_u64()
                    .or(v["code"].as_u64())
                    .map(|c| c as u32),
                message: v["reply"].as_str().unwrap_or("").to_string(),
                headers: v["headers"]
                    .as_object()
                    .map(|h| {
                        h.iter()
                            .map(|(k, v)| (k.to_lowercase(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                body: match &v["body"] {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                },
            };
            let ok = v["ok"].as_bool().unwrap_or(false);
            let zone = delivery.as_ref().map_or(chrono_tz::UTC, |d| d.zone());
            let outcome = Outcome {
                ok,
                class: if ok {
                    None
                } else {
                    Some(v["class"].as_str().unwrap_or("permanent"))
                },
                message: v["message"].as_str().unwrap_or(""),
                reply: Some(&reply),
                attempt: v["attempt"].as_u64().unwrap_or(1) as u32,
                batch_id: "test",
                delivery: delivery.as_ref().map_or("test", |d| d.name.as_str()),
                record_count: v["record_count"].as_u64().unwrap_or(0),
                destination: "test",
                zone,
                now: chrono::Utc::now(),
            };
            match response::handle(&script, &limits, &outcome) {
                Ok(action) => println!("{}", action.describe(zone)),
                Err(e) => {
                    eprintln!("on_response failed: {e}");
                    return Ok(ExitCode::from(crate::cli::EXIT_ERROR));
                }
            }
        }
        Hook::Schedule => {
            let v = match read_json(a.input) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(EXIT_CONFIG));
                }
            };
            let now = v["now"]
                .as_i64()
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .unwrap_or_else(chrono::Utc::now);
            let stats = PendingStats {
                count: v["pending"].as_u64().unwrap_or(0),
                bytes: v["pending_bytes"].as_u64().unwrap_or(0),
                oldest: v["oldest_age"]
                    .as_i64()
                    .map(|a| now - chrono::Duration::seconds(a)),
            };
            let zone = delivery.as_ref().map_or(chrono_tz::UTC, |d| d.zone());
            let name = delivery.as_ref().map_or("test", |d| d.name.as_str());
            match schedule::ask(&script, &limits, name, &stats, zone, now) {
                Ok(schedule::Verdict::At(at)) => println!(
                    "at {} ({})",
                    at.to_rfc3339(),
                    at.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z")
                ),
                Ok(schedule::Verdict::Now) => println!("now"),
                Ok(schedule::Verdict::Nothing) => {
                    println!("no opinion: the delivery's other triggers decide")
                }
                Err(e) => {
                    eprintln!("next_batch failed: {e}");
                    return Ok(ExitCode::from(crate::cli::EXIT_ERROR));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
