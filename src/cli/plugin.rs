//! `consign plugin list | inspect PATH | check PATH`: the plugins folder as
//! the engine sees it, one package's manifest and interface, and a
//! connection check of one package with a given config.

use super::{EXIT_CONFIG, EXIT_UNREACHABLE};
use crate::config::{Config, PluginDestConfig, PluginsConfig};
use crate::destination::{Destination, PluginDestination};
use crate::plugin::{Loaded, Plugins};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// `[plugins]` of the config when it loads, else the defaults (with a
/// private compile cache, so inspecting never writes beside the config).
fn settings(cfg: Option<&Config>) -> PluginsConfig {
    match cfg {
        Some(c) => c.plugins.clone(),
        None => PluginsConfig {
            cache_dir: user_cache(),
            ..PluginsConfig::default()
        },
    }
}

/// The user's own cache folder (never a shared /tmp path: compiled code is
/// loaded from it).
fn user_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".consign-cache"))
        .join("consign/plugins")
}

/// A package folder from PATH (the folder, its plugin.toml or its artefact).
fn package_dir(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

pub fn list(config: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = match crate::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let (plugins, _) = Plugins::load(&cfg.plugins);
    let status = plugins.status();
    let used: Vec<(&str, &str)> = cfg
        .deliveries
        .iter()
        .filter_map(|d| match &d.destination {
            crate::config::DestinationConfig::Plugin(p) => {
                Some((p.plugin.as_str(), d.name.as_str()))
            }
            _ => None,
        })
        .collect();
    if json {
        let rows: Vec<_> = status
            .iter()
            .map(|s| {
                let p = s.name.as_deref().and_then(|n| plugins.get(n));
                serde_json::json!({
                    "status": s,
                    "sdk": p.as_ref().map(|p| p.manifest.sdk.clone()),
                    "capabilities": p.as_ref().map(|p| p.manifest.capabilities.clone()),
                    "used_by": used.iter().filter(|(n, _)| Some(*n) == s.name.as_deref()).map(|(_, d)| *d).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "dir": cfg.plugins.dir, "plugins": rows })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("plugins folder: {}", cfg.plugins.dir.display());
    if status.is_empty() {
        println!("  (no plugin packages: each is a folder with a plugin.toml)");
    }
    for s in &status {
        let p = s.name.as_deref().and_then(|n| plugins.get(n));
        match (&p, &s.error) {
            (Some(p), _) => {
                let by: Vec<&str> = used
                    .iter()
                    .filter(|(n, _)| *n == p.name())
                    .map(|(_, d)| *d)
                    .collect();
                println!(
                    "  {:<16} {:<8} {:<6} sdk {:<4} sha256 {}  http {:?} env {:?}{}",
                    p.name(),
                    p.manifest.version,
                    format!("{:?}", p.kind()).to_lowercase(),
                    p.manifest.sdk,
                    &p.sha256[..12],
                    p.manifest.capabilities.http,
                    p.manifest.capabilities.env,
                    if by.is_empty() {
                        String::new()
                    } else {
                        format!("  used by {}", by.join(", "))
                    }
                );
            }
            (None, Some(e)) => println!("  {:<16} NOT LOADED: {e}", s.folder),
            (None, None) => println!("  {:<16} not loaded", s.folder),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load_one(config: &Path, path: &Path) -> Result<(Plugins, Loaded), ExitCode> {
    let cfg = crate::config::load(config).ok();
    let plugins = Plugins::empty(&settings(cfg.as_ref()));
    match plugins.load_package(&package_dir(path), 0) {
        Ok(p) => Ok((plugins, p)),
        Err(e) => {
            eprintln!("{e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

pub fn inspect(config: &Path, path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let (_plugins, p) = match load_one(config, path) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let (imports, exports) = p.interface();
    let m = &p.manifest;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "manifest": m.redacted(), "info": p.info, "sha256": p.sha256, "size": p.size,
                "imports": imports, "exports": exports,
                "load_ms": p.load_time.as_secs_f64() * 1000.0, "cached": p.cached,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} {} ({:?}) — {}",
        m.name, m.version, m.kind, m.description
    );
    println!(
        "  file        {} ({} bytes)",
        p.dir.join(&m.file).display(),
        p.size
    );
    println!("  sha256      {}", p.sha256);
    println!(
        "  sdk         {} (this consign: {}.{})",
        m.sdk,
        crate::plugin::manifest::SDK_MAJOR,
        crate::plugin::manifest::SDK_MINOR
    );
    println!(
        "  info()      {} {}: {}",
        p.info.name, p.info.version, p.info.description
    );
    println!(
        "  imports     {}",
        if imports.is_empty() {
            "-".into()
        } else {
            imports.join(", ")
        }
    );
    println!("  exports     {}", exports.join(", "));
    println!("  http        {:?}", m.capabilities.http);
    println!("  env         {:?}", m.capabilities.env);
    println!(
        "  loaded in   {:.1} ms{}",
        p.load_time.as_secs_f64() * 1000.0,
        if p.cached {
            " (compiled artefact from the cache)"
        } else {
            ""
        }
    );
    if !m.config.is_empty() {
        println!("  config:");
        for (key, k) in &m.config {
            let default = match (&k.default, k.secret) {
                (Some(_), true) => " default (secret)".to_string(),
                (Some(d), false) => format!(" default {d}"),
                (None, _) if k.required => " required".to_string(),
                (None, _) => String::new(),
            };
            println!(
                "    {key:<20} {:<8}{default}{}  {}",
                format!("{:?}", k.ty).to_lowercase(),
                if k.secret { " secret" } else { "" },
                k.description
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub struct CheckArgs<'a> {
    pub path: &'a Path,
    /// `KEY=VALUE` settings (TOML values; bare words are strings).
    pub set: &'a [String],
    pub allow_http: &'a [String],
    pub allow_env: &'a [String],
}

pub fn check(config: &Path, a: &CheckArgs<'_>, json: bool) -> anyhow::Result<ExitCode> {
    let (plugins, p) = match load_one(config, a.path) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    if let Some(bad) = a
        .allow_http
        .iter()
        .find(|h| !crate::plugin::capability::valid_pattern(h))
    {
        eprintln!("--allow-http {bad:?}: give host, host:port, host:*, *.domain or * (no scheme, no path)");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let mut table = toml::Table::new();
    for kv in a.set {
        let Some((k, v)) = kv.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
            eprintln!("--set {kv:?}: write KEY=VALUE");
            return Ok(ExitCode::from(EXIT_CONFIG));
        };
        let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.to_string()));
        table.insert(k.trim().to_string(), value);
    }
    if let Err(errors) = p.manifest.resolve_config(&table) {
        for e in errors {
            eprintln!("{e}");
        }
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let name = p.manifest.name.clone();
    let dir = p.dir.clone();
    // Serve the package from its own folder's parent, as the engine would.
    let mut cfg = plugins.config().clone();
    cfg.dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
    let registry = Arc::new(Plugins::empty(&cfg));
    registry.insert(p);
    let dest = PluginDestination::new(
        PluginDestConfig {
            plugin: name,
            config: table,
            allow_http: a.allow_http.to_vec(),
            allow_env: a.allow_env.to_vec(),
            ca_file: None,
            memory_limit: None,
            timeout: None,
            fuel: None,
        },
        registry,
    );
    match dest.check() {
        Ok(line) => {
            if json {
                println!("{}", serde_json::json!({ "ok": true, "message": line }));
            } else {
                println!("ok    {line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": false, "class": e.class.as_str(), "message": e.message })
                );
            } else {
                println!("FAIL  {} — {e}", dest.describe());
            }
            Ok(ExitCode::from(EXIT_UNREACHABLE))
        }
    }
}
