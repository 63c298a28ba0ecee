//! The plugin itself: configuration, delivery (copy + rename) and check.
//! Nothing here touches raw pointers; `lib.rs` does the FFI.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::abi::{CONSIGN_PERMANENT, CONSIGN_RETRYABLE};

/// One configured instance. Immutable, so `deliver` and `check` can run on
/// several threads at once.
#[derive(Debug)]
pub struct Copier {
    dir: PathBuf,
}

/// A file to copy (from the host's `consign_file`).
#[derive(Debug)]
pub struct Source {
    pub name: String,
    pub path: PathBuf,
}

/// Why a call failed: an outcome status and one line for the operator.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub status: i32,
    pub message: String,
}

/// Unique temp names across threads and calls of this process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl Copier {
    /// From the plugin's config (a JSON object): `dir` is required and
    /// absolute (a relative one would depend on the engine's working
    /// directory).
    pub fn from_config(json: &str) -> Result<Copier, String> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| format!("native-copy: config is not JSON: {e}"))?;
        match value.get("dir") {
            Some(serde_json::Value::String(d)) if !d.trim().is_empty() => {
                let dir = PathBuf::from(d);
                if !dir.is_absolute() {
                    return Err(format!(
                        "native-copy: dir must be an absolute path, not {d:?} (config `dir`)"
                    ));
                }
                Ok(Copier { dir })
            }
            Some(_) => Err("native-copy: config `dir` must be a non-empty string".into()),
            None => Err("native-copy: config `dir` is required".into()),
        }
    }

    /// Copy every file to `dir/name` through a temp name and a rename, so
    /// the partner never sees a partial file. Returns the receipt line.
    pub fn deliver(&self, batch_id: &str, files: &[Source]) -> Result<String, Failure> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| io_failure(&format!("creating {}", self.dir.display()), &e))?;
        for file in files {
            let target = self.dir.join(checked_name(&file.name)?);
            let temp = self.dir.join(format!(
                ".{}.{}-{}-{}.tmp",
                file.name,
                std::process::id(),
                TEMP_SEQ.fetch_add(1, Ordering::Relaxed),
                sanitize(batch_id)
            ));
            let result = copy_synced(&file.path, &temp).and_then(|()| fs::rename(&temp, &target));
            if let Err(e) = result {
                let _ = fs::remove_file(&temp);
                return Err(io_failure(
                    &format!("copying {} to {}", file.path.display(), target.display()),
                    &e,
                ));
            }
        }
        Ok(format!(
            "copied {} files to {}",
            files.len(),
            self.dir.display()
        ))
    }

    /// The directory exists and a file can be created in it; or it does not
    /// exist yet and its nearest existing parent is a writable directory
    /// (`deliver` creates it). Nothing is created.
    pub fn check(&self) -> Result<String, Failure> {
        let shown = self.dir.display();
        match fs::metadata(&self.dir) {
            Ok(meta) => {
                writable_dir(&self.dir, &meta)?;
                Ok(format!("{shown} exists and is writable"))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = self
                    .dir
                    .ancestors()
                    .skip(1)
                    .find_map(|p| fs::metadata(p).ok().map(|m| (p, m)));
                let Some((parent, meta)) = parent else {
                    return Err(io_failure(&format!("dir {shown}"), &e));
                };
                writable_dir(parent, &meta)?;
                Ok(format!(
                    "{shown} will be created (its parent {} is writable)",
                    parent.display()
                ))
            }
            Err(e) => Err(io_failure(&format!("dir {shown}"), &e)),
        }
    }
}

/// `dir` (with metadata `meta`) is a directory a probe file can be created
/// and removed in.
fn writable_dir(dir: &Path, meta: &fs::Metadata) -> Result<(), Failure> {
    if !meta.is_dir() {
        return Err(Failure {
            status: CONSIGN_PERMANENT,
            message: format!("{} is not a directory", dir.display()),
        });
    }
    let probe = dir.join(format!(
        ".consign-check-{}-{}",
        std::process::id(),
        TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&probe, b"check")
        .and_then(|()| fs::remove_file(&probe))
        .map_err(|e| io_failure(&format!("dir {} is not writable", dir.display()), &e))
}

fn copy_synced(from: &Path, to: &Path) -> io::Result<()> {
    fs::copy(from, to)?;
    fs::File::open(to)?.sync_all()
}

/// A file name that stays inside `dir`.
fn checked_name(name: &str) -> Result<&str, Failure> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(Failure {
            status: CONSIGN_PERMANENT,
            message: format!("file name {name:?} is not a plain file name"),
        });
    }
    Ok(name)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// Missing paths and refused permissions need an operator (permanent);
/// anything else (disk full, I/O errors) may pass (retryable).
fn io_failure(what: &str, e: &io::Error) -> Failure {
    let status = match e.kind() {
        io::ErrorKind::NotFound
        | io::ErrorKind::PermissionDenied
        | io::ErrorKind::InvalidInput
        | io::ErrorKind::NotADirectory
        | io::ErrorKind::ReadOnlyFilesystem => CONSIGN_PERMANENT,
        _ => CONSIGN_RETRYABLE,
    };
    Failure {
        status,
        message: format!("{what}: {e}"),
    }
}
