//! The byte pipeline under the encoder: per part, encoded bytes → gzip →
//! OpenPGP → spool file (hashed while written). Two ways to drive it: in the
//! encoding thread (needed to split by final size, which must be estimated
//! as bytes are written), or on a second thread fed through a small bounded
//! channel so compression runs beside encoding.

use super::encrypt::Encryption;
use super::spool::{FileDigest, SpoolWriter};
use crate::config::Compression;
use flate2::write::GzEncoder;
use openpgp::serialize::stream::Message;
use sequoia_openpgp as openpgp;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// How parts are produced, and where.
pub(crate) struct SinkSpec<'a> {
    pub compression: Compression,
    pub gzip_level: u32,
    pub encryption: Option<&'a Encryption>,
    pub md5: bool,
    /// Sync-flush gzip after this much input (bounds the size estimate).
    pub flush_every: u64,
    /// Spool path of part `n` (1-based).
    pub path: &'a (dyn Fn(u32) -> PathBuf + Sync),
}

/// Where a part's bytes go.
pub(crate) trait PartSink {
    fn open(&mut self, part: u32) -> io::Result<()>;
    fn write(&mut self, data: &[u8]) -> io::Result<()>;
    /// An upper bound of the final file size if `extra` more encoded bytes
    /// were written now (only the in-thread sink can tell).
    fn estimate(&mut self, extra: u64) -> Option<u64>;
    fn close(&mut self) -> io::Result<FileDigest>;
}

/// A spool writer shared between the pipeline (which finishes it) and the
/// OpenPGP writer stack (which owns a handle while it writes).
#[derive(Clone)]
struct Shared(Arc<Mutex<Option<SpoolWriter>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.lock() {
            Ok(mut g) => match g.as_mut() {
                Some(w) => w.write(buf),
                None => Err(io::Error::other("spool file already closed")),
            },
            Err(_) => Err(io::Error::other("spool lock poisoned")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.0.lock() {
            Ok(mut g) => g.as_mut().map_or(Ok(()), |w| w.flush()),
            Err(_) => Err(io::Error::other("spool lock poisoned")),
        }
    }
}

/// Below gzip: the spool file, possibly through OpenPGP. Counts bytes in.
struct Lower<'a> {
    pgp: Option<Message<'a>>,
    spool: Shared,
    written: u64,
}

impl Write for Lower<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.pgp.as_mut() {
            Some(m) => m.write(buf)?,
            None => self.spool.write(buf)?,
        };
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.pgp.as_mut() {
            Some(m) => m.flush(),
            None => self.spool.flush(),
        }
    }
}

impl Lower<'_> {
    fn finish(self) -> io::Result<FileDigest> {
        if let Some(m) = self.pgp {
            m.finalize().map_err(io::Error::other)?;
        }
        let w = self
            .spool
            .0
            .lock()
            .map_err(|_| io::Error::other("spool lock poisoned"))?
            .take()
            .ok_or_else(|| io::Error::other("spool file finished twice"))?;
        w.finish()
    }
}

enum Stack<'a> {
    Plain(Lower<'a>),
    Gzip(Box<GzEncoder<Lower<'a>>>),
}

/// One open part.
struct Open<'a> {
    stack: Stack<'a>,
    flush_every: u64,
    input: u64,
    since_flush: u64,
}

fn open_part<'a>(spec: &SinkSpec<'a>, part: u32) -> io::Result<Open<'a>> {
    let spool = Shared(Arc::new(Mutex::new(Some(SpoolWriter::create_with(
        &(spec.path)(part),
        spec.md5,
    )?))));
    let pgp = match spec.encryption {
        Some(e) => Some(e.writer(spool.clone())?),
        None => None,
    };
    let lower = Lower {
        pgp,
        spool,
        written: 0,
    };
    let stack = match spec.compression {
        Compression::None => Stack::Plain(lower),
        Compression::Gzip => Stack::Gzip(Box::new(GzEncoder::new(
            lower,
            flate2::Compression::new(spec.gzip_level),
        ))),
    };
    Ok(Open {
        stack,
        flush_every: spec.flush_every,
        input: 0,
        since_flush: 0,
    })
}

impl Open<'_> {
    fn write(&mut self, data: &[u8], track: bool) -> io::Result<()> {
        match &mut self.stack {
            Stack::Plain(l) => l.write_all(data)?,
            Stack::Gzip(g) => {
                g.write_all(data)?;
                self.since_flush += data.len() as u64;
                if track && self.since_flush >= self.flush_every {
                    g.flush()?;
                    self.since_flush = 0;
                }
            }
        }
        self.input += data.len() as u64;
        Ok(())
    }

    /// Bound of the final size with `extra` more input.
    fn estimate(&self, extra: u64, enc: Option<&Encryption>) -> u64 {
        let below_gzip = match &self.stack {
            Stack::Plain(l) => l.written + extra,
            // Output so far (complete up to the last sync flush) plus the
            // unflushed input as if incompressible, plus deflate/gzip framing.
            Stack::Gzip(g) => {
                let raw = self.since_flush + extra;
                g.get_ref().written + raw + raw / 1000 + 5 * (raw / 16384 + 1) + 32
            }
        };
        match enc {
            None => below_gzip,
            Some(e) => {
                let binary =
                    below_gzip + below_gzip / 256 + 1024 * (e.recipients() as u64 + 1) + 1024;
                if e.armored() {
                    binary.div_ceil(3) * 4 + (binary / 48 + 1) * 2 + 256
                } else {
                    binary
                }
            }
        }
    }

    fn close(self) -> io::Result<FileDigest> {
        match self.stack {
            Stack::Plain(l) => l.finish(),
            Stack::Gzip(g) => g.finish()?.finish(),
        }
    }
}

/// Everything in the encoding thread (estimates available).
pub(crate) struct DirectSink<'a> {
    spec: SinkSpec<'a>,
    open: Option<Open<'a>>,
}

impl<'a> DirectSink<'a> {
    pub fn new(spec: SinkSpec<'a>) -> Self {
        DirectSink { spec, open: None }
    }
}

fn not_open() -> io::Error {
    io::Error::other("no part is open")
}

impl PartSink for DirectSink<'_> {
    fn open(&mut self, part: u32) -> io::Result<()> {
        self.open = Some(open_part(&self.spec, part)?);
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.open.as_mut().ok_or_else(not_open)?.write(data, true)
    }
    fn estimate(&mut self, extra: u64) -> Option<u64> {
        self.open
            .as_ref()
            .map(|o| o.estimate(extra, self.spec.encryption))
    }
    fn close(&mut self) -> io::Result<FileDigest> {
        self.open.take().ok_or_else(not_open)?.close()
    }
}

enum Msg {
    Open(u32),
    Data(Vec<u8>),
    Close,
}

const CHUNK: usize = 256 << 10;
const DEPTH: usize = 8;

/// Compression and encryption on a second thread.
pub(crate) struct ThreadedSink {
    tx: Option<mpsc::SyncSender<Msg>>,
    buf: Vec<u8>,
    closed: usize,
}

impl ThreadedSink {
    /// Start the worker inside `scope`; `join` returns every closed part's digest.
    pub fn start<'scope, 'env: 'scope>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        spec: SinkSpec<'env>,
    ) -> (
        ThreadedSink,
        std::thread::ScopedJoinHandle<'scope, io::Result<Vec<FileDigest>>>,
    ) {
        let (tx, rx) = mpsc::sync_channel::<Msg>(DEPTH);
        let handle = scope.spawn(move || {
            let mut done = Vec::new();
            let mut open: Option<Open<'_>> = None;
            for msg in rx {
                match msg {
                    Msg::Open(n) => open = Some(open_part(&spec, n)?),
                    Msg::Data(d) => open.as_mut().ok_or_else(not_open)?.write(&d, false)?,
                    Msg::Close => done.push(open.take().ok_or_else(not_open)?.close()?),
                }
            }
            Ok(done)
        });
        (
            ThreadedSink {
                tx: Some(tx),
                buf: Vec::with_capacity(CHUNK),
                closed: 0,
            },
            handle,
        )
    }

    fn send(&mut self, m: Msg) -> io::Result<()> {
        let tx = self.tx.as_ref().ok_or_else(not_open)?;
        tx.send(m)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "compressor stopped"))
    }

    fn send_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.send(Msg::Data(full))?;
        }
        Ok(())
    }

    /// End the input; the worker then returns.
    pub fn finish(&mut self) {
        self.tx = None;
    }
}

impl PartSink for ThreadedSink {
    fn open(&mut self, part: u32) -> io::Result<()> {
        self.send(Msg::Open(part))
    }
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(())
    }
    fn estimate(&mut self, _extra: u64) -> Option<u64> {
        None
    }
    fn close(&mut self) -> io::Result<FileDigest> {
        self.send_buf()?;
        self.send(Msg::Close)?;
        self.closed += 1;
        // The digest arrives when the worker is joined.
        Ok(FileDigest::pending())
    }
}
