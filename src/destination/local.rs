//! `local`: a directory on this machine. Each file is copied to a temporary
//! name in the target directory, fsynced, then renamed over the final name.

use super::*;
use crate::config::LocalConfig;
use std::fs::{self, File};
use std::io;
use std::path::Path;

pub struct LocalDestination {
    cfg: LocalConfig,
}

impl LocalDestination {
    pub fn new(cfg: LocalConfig) -> Self {
        LocalDestination { cfg }
    }

    fn fail(&self, what: &str, path: &Path, e: io::Error) -> DestinationError {
        DestinationError::new(io_class(&e), format!("{what} {}: {e}", path.display()))
    }

    fn ensure_dir(&self, dir: &Path) -> Result<(), DestinationError> {
        if dir.is_dir() {
            return Ok(());
        }
        if !self.cfg.create_dirs {
            return Err(DestinationError::new(
                ErrorClass::NotFound,
                format!(
                    "directory {} does not exist (create_dirs = false)",
                    dir.display()
                ),
            ));
        }
        fs::create_dir_all(dir).map_err(|e| self.fail("cannot create directory", dir, e))
    }
}

impl Destination for LocalDestination {
    fn describe(&self) -> String {
        format!("local:{}", self.cfg.dir.display())
    }

    fn deliver(&self, shipment: &Shipment) -> Result<Receipt, DestinationError> {
        let mut placed = Vec::new();
        for f in &shipment.files {
            let dest = self.cfg.dir.join(&f.name);
            let dir = dest.parent().unwrap_or(&self.cfg.dir).to_path_buf();
            self.ensure_dir(&dir)?;
            let tmp = dir.join(format!(
                ".{}.{}.part",
                dest.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
                shipment.batch_id
            ));
            let mut src =
                File::open(&f.path).map_err(|e| self.fail("cannot read spool file", &f.path, e))?;
            let mut out = File::create(&tmp).map_err(|e| self.fail("cannot create", &tmp, e))?;
            let copied =
                io::copy(&mut src, &mut out).map_err(|e| self.fail("cannot write", &tmp, e))?;
            out.sync_all()
                .map_err(|e| self.fail("cannot fsync", &tmp, e))?;
            drop(out);
            if copied != f.bytes {
                let _ = fs::remove_file(&tmp);
                return Err(DestinationError::new(
                    ErrorClass::Transient,
                    format!("wrote {copied} bytes of {} to {}", f.bytes, tmp.display()),
                ));
            }
            fs::rename(&tmp, &dest).map_err(|e| self.fail("cannot rename into", &dest, e))?;
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.fail("cannot fsync directory", &dir, e))?;
            placed.push(dest.display().to_string());
        }
        Ok(Receipt {
            reply: None,
            delivered: Vec::new(),
            detail: placed.join(", "),
        })
    }

    fn check(&self) -> Result<String, DestinationError> {
        self.ensure_dir(&self.cfg.dir)?;
        let probe = self.cfg.dir.join(".consign-check");
        fs::write(&probe, b"ok").map_err(|e| self.fail("cannot write", &probe, e))?;
        let back = fs::read(&probe).map_err(|e| self.fail("cannot read back", &probe, e))?;
        let _ = fs::remove_file(&probe);
        if back != b"ok" {
            return Err(DestinationError::new(
                ErrorClass::Permanent,
                "read back different bytes",
            ));
        }
        Ok(format!("{} is writable", self.cfg.dir.display()))
    }
}
