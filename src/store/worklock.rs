//! Which process may recover interrupted work. Every process that assembles
//! or delivers batches (`serve`, CLI `flush`, `batches retry/regenerate`)
//! holds `<db>.work-lock` *shared* while it works. Batches left
//! `assembling` or `delivering` by a process that died are recovered only
//! by a process that got the lock *exclusively* — nobody else is working,
//! so those batches are truly orphaned. The kernel drops the lock of a
//! killed process.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

pub struct WorkLock {
    _file: File,
}

impl WorkLock {
    /// Take the lock shared. If no other process holds it (or, with `wait`,
    /// once none does), run `recover` first while holding it exclusively.
    /// Returns the lock and what `recover` returned, if it ran.
    pub fn acquire<T, E: From<std::io::Error>>(
        db: &Path,
        wait: bool,
        recover: impl FnOnce() -> Result<T, E>,
    ) -> Result<(WorkLock, Option<T>), E> {
        let path = PathBuf::from(format!("{}.work-lock", db.display()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let exclusive = match file.try_lock() {
            Ok(()) => true,
            Err(_) if wait => {
                tracing::info!(
                    "another consign process is assembling or delivering; waiting for it to finish before recovering interrupted batches"
                );
                file.lock()?;
                true
            }
            Err(_) => false,
        };
        let recovered = if exclusive {
            let r = recover()?;
            // Downgrade: others may work beside us from now on.
            file.lock_shared()?;
            Some(r)
        } else {
            file.lock_shared()?;
            None
        };
        Ok((WorkLock { _file: file }, recovered))
    }
}
