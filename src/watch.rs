//! Reload on change: watch a folder and call back once per burst of
//! changes (an editor's save or a copied plugin is several events).

use std::path::Path;
use std::time::Duration;

/// How long events are collected before one callback runs.
const SETTLE: Duration = Duration::from_millis(200);

/// Watch `dir` recursively; after each burst of changes call `f` on a
/// thread named `name`. `f` returns `false` to stop (its owner is gone).
/// The watch lasts as long as the returned handle.
pub fn on_change(
    dir: &Path,
    name: &str,
    mut f: impl FnMut() -> bool + Send + 'static,
) -> Result<notify::RecommendedWatcher, String> {
    use notify::Watcher;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    watcher
        .watch(dir, notify::RecursiveMode::Recursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while rx.recv().is_ok() {
                std::thread::sleep(SETTLE);
                while rx.try_recv().is_ok() {}
                if !f() {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the {name} thread: {e}"))?;
    Ok(watcher)
}
