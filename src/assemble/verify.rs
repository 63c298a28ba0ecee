//! Verification of spooled files before delivery (and by `consign batches
//! verify`): size and SHA-256 against what assembly recorded, then the
//! content — decrypt (when a verify key is configured), decompress, parse
//! with the format's reader and count records.

use super::encrypt;
use crate::config::{Compression, EncryptionConfig, FileFormat, Layout};
use crate::store::BatchFile;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

/// What is wrong with a batch's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    /// The spool differs from what assembly wrote (missing, other size or
    /// hash): rebuilding from the stored records can fix it. Otherwise the
    /// content itself does not check out.
    pub changed: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn changed(message: String) -> Problem {
    Problem {
        message,
        changed: true,
    }
}

fn content(message: String) -> Problem {
    Problem {
        message,
        changed: false,
    }
}

/// Check every file. `Ok` carries notes (e.g. content not checked); `Err`
/// says what is wrong, naming the file.
pub fn verify(
    layout: &Layout,
    encryption: Option<&EncryptionConfig>,
    files: &[BatchFile],
    path_of: &dyn Fn(u32) -> PathBuf,
) -> Result<Vec<String>, Problem> {
    let mut notes = Vec::new();
    if files.is_empty() {
        return Err(changed("the batch has no files".into()));
    }
    for f in files {
        let path = path_of(f.part);
        let file = std::fs::File::open(&path).map_err(|e| {
            changed(format!(
                "{}: cannot read spool file {}: {e}",
                f.name,
                path.display()
            ))
        })?;
        // One read of the file: hashed on the way into the decoders.
        let mut hashed = Hashing::new(file);
        let content = if f.kind != "data" {
            Ok(None)
        } else {
            content_count(layout, encryption, &mut hashed, &f.name, &mut notes)
        };
        std::io::copy(&mut hashed, &mut std::io::sink())
            .map_err(|e| changed(format!("{}: {e}", f.name)))?;
        let (bytes, sha) = hashed.finish();
        if bytes != f.bytes || sha != f.sha256 {
            return Err(changed(format!(
                "{}: spool file has {bytes} bytes, sha256 {sha}; assembly recorded {} bytes, sha256 {}",
                f.name, f.bytes, f.sha256
            )));
        }
        if let Some(n) = content.map_err(self::content)? {
            if n != f.records {
                return Err(self::content(format!(
                    "{}: holds {n} records, assembly recorded {}",
                    f.name, f.records
                )));
            }
        }
    }
    Ok(notes)
}

/// Decrypt (if possible), decompress, parse and count one data file.
/// `Ok(None)` when the content cannot be checked (encrypted, no verify key).
fn content_count(
    layout: &Layout,
    encryption: Option<&EncryptionConfig>,
    input: &mut Hashing,
    name: &str,
    notes: &mut Vec<String>,
) -> Result<Option<u64>, String> {
    let reader: Box<dyn Read + Send + Sync + '_> = Box::new(input);
    let reader: Box<dyn Read + '_> = match encryption {
        Some(e) => match &e.verify_key {
            Some(k) => encrypt::decrypt(k, reader).map_err(|e| format!("{name}: {e}"))?,
            None => {
                notes.push(format!("{name}: encrypted; size and hash checked, content not (no encryption.verify_key)"));
                return Ok(None);
            }
        },
        None => reader,
    };
    let reader: Box<dyn Read + '_> = match layout.file.compression {
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(reader)),
        Compression::None => reader,
    };
    count(layout, BufReader::with_capacity(1 << 16, reader))
        .map(Some)
        .map_err(|e| format!("{name}: {e}"))
}

/// A reader that hashes and counts what is read through it.
struct Hashing {
    inner: std::fs::File,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl Hashing {
    fn new(inner: std::fs::File) -> Self {
        Hashing {
            inner,
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (u64, String) {
        (self.bytes, hex::encode(sha2::Digest::finalize(self.hasher)))
    }
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Parse a decoded file and count its records.
fn count(layout: &Layout, r: impl BufRead) -> Result<u64, String> {
    match layout.file.format {
        FileFormat::Csv => {
            let c = &layout.csv;
            let mut b = csv::ReaderBuilder::new();
            b.delimiter(c.delimiter as u8)
                .quote(c.quote as u8)
                .has_headers(c.header)
                .flexible(false);
            if let Some(e) = c.escape.filter(|e| *e != c.quote) {
                b.double_quote(false).escape(Some(e as u8));
            }
            let mut rdr = b.from_reader(r);
            let mut n = 0;
            let mut rec = csv::ByteRecord::new();
            while rdr
                .read_byte_record(&mut rec)
                .map_err(|e| format!("invalid CSV: {e}"))?
            {
                n += 1;
            }
            Ok(n)
        }
        FileFormat::Ndjson => {
            let mut n = 0;
            for (i, line) in r.lines().enumerate() {
                let line = line.map_err(|e| format!("line {}: {e}", i + 1))?;
                if line.is_empty() {
                    continue;
                }
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&line)
                    .map_err(|e| format!("line {}: not a JSON object: {e}", i + 1))?;
                n += 1;
            }
            Ok(n)
        }
        FileFormat::Json => {
            let mut de = serde_json::Deserializer::from_reader(r);
            let n = serde::Deserializer::deserialize_map(
                &mut de,
                Envelope {
                    key: &layout.json.records_key,
                },
            )
            .map_err(|e| format!("invalid JSON: {e}"))?;
            de.end().map_err(|e| format!("invalid JSON: {e}"))?;
            n.ok_or_else(|| {
                format!(
                    "no {:?} array in the JSON envelope",
                    layout.json.records_key
                )
            })
        }
        FileFormat::Xml => {
            use quick_xml::events::Event;
            let mut rdr = quick_xml::Reader::from_reader(r);
            rdr.config_mut().check_end_names = true;
            let mut buf = Vec::new();
            let (mut depth, mut n, mut roots) = (0usize, 0u64, 0);
            let record = layout.xml.record.as_str();
            loop {
                match rdr
                    .read_event_into(&mut buf)
                    .map_err(|e| format!("invalid XML at byte {}: {e}", rdr.buffer_position()))?
                {
                    Event::Start(e) => {
                        if depth == 0 {
                            roots += 1;
                        }
                        if depth == 1 && e.name().0 == record {
                            n += 1;
                        }
                        depth += 1;
                    }
                    Event::Empty(e) => {
                        if depth == 0 {
                            roots += 1;
                        }
                        if depth == 1 && e.name().0 == record {
                            n += 1;
                        }
                    }
                    Event::End(_) => depth = depth.saturating_sub(1),
                    Event::Eof => break,
                    _ => {}
                }
                buf.clear();
            }
            if roots != 1 || depth != 0 {
                return Err(format!(
                    "not one complete root element ({roots} roots, depth {depth} at end)"
                ));
            }
            Ok(n)
        }
        FileFormat::FixedWidth => {
            let ending = layout.fixed_width.line_ending.bytes();
            let mut all = Vec::new();
            let mut r = r;
            let mut n = 0;
            let mut width = None;
            loop {
                all.clear();
                let got = r.read_until(b'\n', &mut all).map_err(|e| e.to_string())?;
                if got == 0 {
                    break;
                }
                if !all.ends_with(ending) {
                    return Err(format!(
                        "line {} does not end with the configured line ending",
                        n + 1
                    ));
                }
                let len = all.len() - ending.len();
                if *width.get_or_insert(len) != len {
                    return Err(format!(
                        "line {} is {len} bytes, line 1 is {} bytes",
                        n + 1,
                        width.unwrap_or(0)
                    ));
                }
                n += 1;
            }
            Ok(n)
        }
    }
}

/// Counts the elements of the records array of a JSON envelope without
/// keeping them.
struct Envelope<'a> {
    key: &'a str,
}

impl<'de> Visitor<'de> for Envelope<'_> {
    type Value = Option<u64>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
        let mut found = None;
        while let Some(k) = m.next_key::<String>()? {
            if k == self.key {
                found = Some(m.next_value::<Counted>()?.0);
            } else {
                m.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

struct Counted(u64);

impl<'de> serde::Deserialize<'de> for Counted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Counted;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of records")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut s: S) -> Result<Counted, S::Error> {
                let mut n = 0;
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Counted(n))
            }
        }
        d.deserialize_seq(V)
    }
}
