//! Spool files: written under a temporary name, hashed and counted on the way,
//! fsynced, then renamed into place.

use md5::Md5;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Where file number `n` (1-based, data files then sidecars) of a batch is spooled.
pub fn spool_path(spool_dir: &Path, delivery: &str, batch_id: &str, n: u32) -> PathBuf {
    spool_dir
        .join(delivery)
        .join(batch_id)
        .join(format!("file-{n}"))
}

/// Size and hashes of a finished file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
    pub md5: Option<String>,
}

impl FileDigest {
    /// Placeholder for a digest computed on another thread.
    pub fn pending() -> FileDigest {
        FileDigest::default()
    }
}

/// A writer that hashes and counts what passes through to the file.
pub struct SpoolWriter {
    file: BufWriter<File>,
    hasher: Sha256,
    md5: Option<Md5>,
    bytes: u64,
    tmp: PathBuf,
    dest: PathBuf,
}

impl SpoolWriter {
    pub fn create(dest: &Path) -> io::Result<SpoolWriter> {
        Self::create_with(dest, false)
    }

    /// Also compute MD5 when `md5` is set.
    pub fn create_with(dest: &Path, md5: bool) -> io::Result<SpoolWriter> {
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = dest.with_extension("tmp");
        let file = File::create(&tmp)?;
        Ok(SpoolWriter {
            file: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            md5: md5.then(Md5::new),
            bytes: 0,
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// Flush, fsync and move into place.
    pub fn finish(mut self) -> io::Result<FileDigest> {
        self.file.flush()?;
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest)?;
        if let Some(dir) = self.dest.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(FileDigest {
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
            md5: self.md5.map(|m| hex::encode(m.finalize())),
        })
    }
}

impl Write for SpoolWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        if let Some(m) = self.md5.as_mut() {
            m.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
