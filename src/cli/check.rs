//! `consign check [--connect] [DELIVERY]`.

use super::{load_config, EXIT_CONFIG, EXIT_UNREACHABLE};
use crate::destination;
use std::path::Path;
use std::process::ExitCode;

/// Can we create and write in `dir`? Probes with a temporary file.
fn writable(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    tempfile::tempfile_in(dir)
        .map(|_| ())
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))
}

pub fn run(path: &Path, connect: bool, only: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = match crate::config::load(path) {
        Ok(c) => c,
        Err(e) if json => {
            println!(
                "{}",
                serde_json::json!({ "ok": false, "errors": e.errors.iter().map(|x| serde_json::json!({ "path": x.path, "line": x.line, "message": x.message })).collect::<Vec<_>>() })
            );
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(_) => match load_config(path) {
            Ok(c) => c,
            Err(code) => return Ok(code),
        },
    };
    let db_dir = cfg
        .store
        .path
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut path_errors = Vec::new();
    for (key, dir) in [
        ("store.path", db_dir),
        ("store.spool_dir", cfg.store.spool_dir.clone()),
    ] {
        if let Err(e) = writable(&dir) {
            path_errors.push(format!("{key}: {e}"));
        }
    }
    // Every script must compile (and pass its self_test) with the roles it is named for.
    let (_, script_errors) = crate::script::Scripts::load(&cfg);
    path_errors.extend(script_errors.iter().map(|e| e.to_string()));
    // Every plugin a delivery names must load, and its config fit the plugin's schema.
    let (plugins, plugin_errors) = crate::plugin::Plugins::load(&cfg.plugins);
    let plugins = std::sync::Arc::new(plugins);
    for d in &cfg.deliveries {
        if let crate::config::DestinationConfig::Plugin(p) = &d.destination {
            match plugins.get(&p.plugin) {
                None => path_errors.push(format!(
                    "delivery[{}].destination.plugin: {}",
                    d.name,
                    plugins.why_missing(&p.plugin)
                )),
                Some(loaded) => {
                    if let Err(errors) = loaded.manifest.resolve_config(&p.config) {
                        path_errors.extend(
                            errors
                                .iter()
                                .map(|e| format!("delivery[{}].destination.{e}", d.name)),
                        );
                    }
                }
            }
        }
    }
    for e in &plugin_errors {
        eprintln!("warning: {e}");
    }
    if !path_errors.is_empty() {
        if json {
            println!(
                "{}",
                serde_json::json!({ "ok": false, "errors": path_errors })
            );
        } else {
            for e in &path_errors {
                eprintln!("{}: {e}", path.display());
            }
        }
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
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
        let dest = destination::build(&d.destination, &plugins);
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
