//! `consign reload`: ask the running `consign serve` to reload its scripts
//! and plugins through the admin API, and print what happened. With no
//! server running, check that the scripts compile and the plugins load.

use super::{load_config, EXIT_CONFIG, EXIT_ERROR};
use crate::script::{ReloadReport, Scripts};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

fn print(r: &ReloadReport, json: bool) {
    if json {
        println!("{}", serde_json::json!(r));
        return;
    }
    for p in &r.reloaded {
        println!("reloaded  {p}");
    }
    for p in &r.unchanged {
        println!("unchanged {p}");
    }
    for (p, e) in &r.failed {
        println!("FAILED    {p} (the previous version stays active): {e}");
    }
}

pub fn run(config: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // The listener answers on loopback when bound to every address.
    let addr = cfg
        .server
        .listen
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "[::1]");
    let url = format!("http://{addr}/v1/admin/reload");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(2))
        .build()?;
    match client.post(&url).send() {
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().unwrap_or_default();
            match serde_json::from_str::<ReloadReport>(&body) {
                Ok(r) => {
                    print(&r, json);
                    Ok(if r.failed.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(EXIT_CONFIG)
                    })
                }
                Err(_) => {
                    eprintln!("{url} answered {status}: {body}");
                    Ok(ExitCode::from(EXIT_ERROR))
                }
            }
        }
        Err(e) if e.is_connect() => {
            eprintln!(
                "no `consign serve` answers on {addr} (server.listen): nothing running to reload; checking that the scripts compile and the plugins load"
            );
            let (_, errors) = Scripts::load(&cfg);
            let mut errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            let (_, plugin_errors) = crate::plugin::Plugins::load(&cfg.plugins);
            errors.extend(plugin_errors);
            for e in &errors {
                eprintln!("{e}");
            }
            Ok(if errors.is_empty() {
                eprintln!("all scripts compile and all plugins load");
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_CONFIG)
            })
        }
        Err(e) => {
            eprintln!("reload request to {url} failed: {e}");
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}
