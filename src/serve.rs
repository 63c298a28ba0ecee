//! `consign serve`: recovery, the HTTP API, one scheduler per delivery and the
//! delivery worker, with an orderly stop on SIGTERM/SIGINT.

use crate::engine::Engine;
use crate::trigger::{self, Clock};
use anyhow::Context;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Batches delivered at the same time, across deliveries.
const DELIVERY_CONCURRENCY: usize = 4;
/// The worker re-reads due batches at least this often (batches made ready
/// by another process, e.g. CLI `flush --no-deliver` or `deliveries resume`).
const WORKER_POLL: Duration = Duration::from_secs(5);
/// Purge of delivered records runs this often.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Hold an exclusive lock beside the database while serving: two `serve`
/// processes on one store would both recover and deliver the same batches.
fn lock_store(db: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let path = std::path::PathBuf::from(format!("{}.serve-lock", db.display()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    if f.try_lock().is_err() {
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        anyhow::bail!(
            "another `consign serve` (pid {}) is using {}; stop it first (two would deliver the same batches)",
            pid.trim(),
            db.display()
        );
    }
    f.set_len(0)?;
    f.rewind()?;
    write!(f, "{}", std::process::id())?;
    Ok(f)
}

pub async fn serve(engine: Arc<Engine>) -> anyhow::Result<()> {
    let broken: Vec<String> = engine
        .scripts
        .status()
        .into_iter()
        .filter_map(|s| s.error.map(|e| format!("{}: {e}", s.path)))
        .collect();
    if !broken.is_empty() {
        anyhow::bail!(
            "scripts do not compile (there is no earlier version to fall back on):\n{}",
            broken.join("\n")
        );
    }
    let missing: Vec<String> = engine
        .config
        .deliveries
        .iter()
        .filter_map(|d| match &d.destination {
            crate::config::DestinationConfig::Plugin(p) => match engine.plugins.get(&p.plugin) {
                None => Some(format!(
                    "delivery {}: {}",
                    d.name,
                    engine.plugins.why_missing(&p.plugin)
                )),
                Some(loaded) => loaded
                    .manifest
                    .resolve_config(&p.config)
                    .err()
                    .map(|errors| {
                        format!(
                            "delivery {}: [delivery.destination] {}",
                            d.name,
                            errors.join("; ")
                        )
                    }),
            },
            _ => None,
        })
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "plugins do not load, or their config does not fit them (`consign check` lists every error):\n{}",
            missing.join("\n")
        );
    }
    let _lock = lock_store(&engine.config.store.path)?;
    // Scripts reload on file changes (and on SIGHUP, `consign reload`, the API).
    let _watch = if engine.config.scripts.watch && !engine.scripts.is_empty() {
        match engine.scripts.watch() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "scripts are not watched ({e}); reload with SIGHUP or `consign reload`"
                );
                None
            }
        }
    } else {
        None
    };
    // Plugins too: a new version compiles beside the old one and swaps in.
    let _watch_plugins = if engine.config.plugins.watch && engine.config.plugins.dir.is_dir() {
        match engine.plugins.watch() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "plugins are not watched ({e}); reload with SIGHUP or `consign reload`"
                );
                None
            }
        }
    } else {
        None
    };
    tokio::spawn(reload_on_hangup(engine.clone()));
    let e = engine.clone();
    let (_work, _recovered) = tokio::task::spawn_blocking(move || e.claim_work(true)).await??;
    let listen = engine.config.server.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (server.listen)"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut tasks = JoinSet::new();
    for d in &engine.config.deliveries {
        let wake = engine.wake.get(&d.name).cloned().unwrap_or_default();
        tasks.spawn(trigger::run(
            d.name.clone(),
            d.trigger.clone(),
            d.batch.empty,
            engine.clone(),
            Clock::System,
            wake,
            stop_rx.clone(),
        ));
    }
    let worker = tokio::spawn(worker(engine.clone(), stop_rx.clone()));
    tasks.spawn(purger(engine.clone(), stop_rx.clone()));

    let mut http_stop = stop_rx.clone();
    let app = crate::api::router(engine.clone());
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await
    });

    shutdown_signal().await;
    tracing::info!("stopping: no new work is taken; waiting for in-flight deliveries");
    let _ = stop_tx.send(true);
    let grace = engine.config.server.shutdown_grace.0;
    if tokio::time::timeout(grace, async {
        let _ = http.await;
        while tasks.join_next().await.is_some() {}
        let _ = worker.await;
    })
    .await
    .is_err()
    {
        tracing::warn!(
            "in-flight work did not finish within {}; it will be recovered at the next start",
            humantime::format_duration(grace)
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: reload scripts and plugins.
async fn reload_on_hangup(engine: Arc<Engine>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGHUP ({e}); reload with `consign reload`");
            return;
        }
    };
    while hup.recv().await.is_some() {
        let e = engine.clone();
        let _ = tokio::task::spawn_blocking(move || e.reload()).await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Deliver due batches, up to `DELIVERY_CONCURRENCY` at once; sleep until the
/// next retry time or a wake-up.
async fn worker(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut running = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let e = engine.clone();
        let due = tokio::task::spawn_blocking(move || e.due(chrono::Utc::now())).await;
        match due {
            Ok(Ok(batches)) => {
                for b in batches {
                    if running.len() >= DELIVERY_CONCURRENCY {
                        break;
                    }
                    let Ok(mut set) = in_flight.lock() else { break };
                    if !set.insert(b.id.clone()) {
                        continue;
                    }
                    drop(set);
                    let e = engine.clone();
                    let flight = in_flight.clone();
                    running.spawn_blocking(move || {
                        if let Err(err) = e.attempt(&b) {
                            tracing::error!(batch = %b.id, "delivery attempt could not be recorded: {err}");
                        }
                        if let Ok(mut s) = flight.lock() {
                            s.remove(&b.id);
                        }
                    });
                }
            }
            Ok(Err(e)) => tracing::error!("cannot read due batches: {e}"),
            Err(e) => tracing::error!("worker task failed: {e}"),
        }
        let e = engine.clone();
        let next_retry = tokio::task::spawn_blocking(move || e.store.next_retry_at())
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten();
        let sleep = next_retry
            .map(|t| (t - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(WORKER_POLL)
            .min(WORKER_POLL);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = engine.work.notified() => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
            _ = stop.changed() => {}
        }
    }
    // Let attempts already running finish (bounded by the caller's grace period).
    while running.join_next().await.is_some() {}
}

async fn purger(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    loop {
        let e = engine.clone();
        match tokio::task::spawn_blocking(move || e.purge()).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(
                records = n,
                "purged records of delivered batches past retention"
            ),
            Ok(Err(e)) => tracing::error!("purge failed: {e}"),
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(PURGE_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}
