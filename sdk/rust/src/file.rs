//! [`BatchFile`]: a file of the batch being delivered, read through the host.

use std::io::{self, Read, Seek, SeekFrom};

use crate::bindings::consign::destination::host;
use crate::{Error, Result};

/// A file of the current batch, opened for reading by its `part`.
///
/// It implements [`Read`] and [`Seek`] (each `read` is one host call of at
/// most [`BatchFile::MAX_READ`] bytes, so prefer large buffers, e.g. 64 KiB)
/// and [`read_at`](BatchFile::read_at) for positioned reads.
///
/// To send a file (or a range of it) over HTTP without reading it, use
/// [`http::Request::file_range`](crate::http::Request::file_range): the host
/// streams it and the bytes never enter the plugin's memory.
#[derive(Debug)]
pub struct BatchFile {
    handle: host::BatchFile,
    part: u32,
    pos: u64,
}

impl BatchFile {
    /// The most bytes the host returns from one read (8 MiB).
    pub const MAX_READ: u32 = 8 * 1024 * 1024;

    /// Open the file with this `part` (see [`FileInfo::open`](crate::FileInfo::open)).
    /// A refusal of the host is a permanent error naming the part.
    pub fn open(part: u32) -> Result<BatchFile> {
        let handle = host::open_file(part)
            .map_err(|e| Error::permanent(format!("opening part {part}: {e}")))?;
        Ok(BatchFile {
            handle,
            part,
            pos: 0,
        })
    }

    /// The part this file is.
    pub fn part(&self) -> u32 {
        self.part
    }

    /// One host read: up to `len` bytes (capped at [`Self::MAX_READ`]) at
    /// `offset`; empty at the end of the file.
    pub fn read_chunk(&self, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        self.handle
            .read(offset, len.min(Self::MAX_READ))
            .map_err(|e| io::Error::other(format!("reading part {} at {offset}: {e}", self.part)))
    }

    /// Read into `buf` from `offset` (like `FileExt::read_at`): the number of
    /// bytes read, 0 at the end of the file. Does not move the cursor of
    /// [`Read`].
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let want = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let chunk = self.read_chunk(offset, want)?;
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Exactly `len` bytes from `offset`, or fewer only when the file ends
    /// first. Several host reads when `len` is larger than [`Self::MAX_READ`].
    pub fn read_range(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(1 << 26));
        let mut at = offset;
        let end = offset.saturating_add(len);
        while at < end {
            let want = u32::try_from(end - at).unwrap_or(u32::MAX);
            let chunk = self.read_chunk(at, want)?;
            if chunk.is_empty() {
                break;
            }
            at += chunk.len() as u64;
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

impl Read for BatchFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BatchFile {
    /// Seeking from the end is not supported (the size is in
    /// [`FileInfo::size`](crate::FileInfo::size)): use `SeekFrom::Start`.
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "BatchFile cannot seek from the end; use FileInfo::size",
                ))
            }
        };
        self.pos = new
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}
