//! Verification of spooled files before delivery (and by `consign batches
//! verify`): size and SHA-256 against what assembly recorded, then the
//! content — decrypt (when a verify key is configured), decompress, parse
//! with the format's reader and count records.

use super::encrypt;
use super::spool::hash_file;
use crate::config::{Compression, EncryptionConfig, FileFormat, Layout};
use crate::store::BatchFile;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Check every file. `Ok` carries notes (e.g. content not checked); `Err`
/// says what is wrong, naming the file.
pub fn verify(
    layout: &Layout,
    encryption: Option<&EncryptionConfig>,
    files: &[BatchFile],
    path_of: &dyn Fn(u32) -> PathBuf,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    if files.is_empty() {
        return Err("the batch has no files".into());
    }
    for f in files {
        let path = path_of(f.part);
        let (bytes, sha) = hash_file(&path)
            .map_err(|e| format!("{}: cannot read spool file {}: {e}", f.name, path.display()))?;
        if bytes != f.bytes || sha != f.sha256 {
            return Err(format!(
                "{}: spool file has {bytes} bytes, sha256 {sha}; assembly recorded {} bytes, sha256 {}",
                f.name, f.bytes, f.sha256
            ));
        }
        if f.kind != "data" {
            continue;
        }
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", f.name))?;
        let reader: Box<dyn Read + Send + Sync> = Box::new(file);
        let reader: Box<dyn Read> = match encryption {
            Some(e) => match &e.verify_key {
                Some(k) => encrypt::decrypt(k, reader).map_err(|e| format!("{}: {e}", f.name))?,
                None => {
                    notes.push(format!("{}: encrypted; size and hash checked, content not (no encryption.verify_key)", f.name));
                    continue;
                }
            },
            None => reader,
        };
        let reader: Box<dyn Read> = match layout.file.compression {
            Compression::Gzip => Box::new(flate2::read::GzDecoder::new(reader)),
            Compression::None => reader,
        };
        let n = count(layout, BufReader::with_capacity(1 << 16, reader))
            .map_err(|e| format!("{}: {e}", f.name))?;
        if n != f.records {
            return Err(format!(
                "{}: holds {n} records, assembly recorded {}",
                f.name, f.records
            ));
        }
    }
    Ok(notes)
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

/// Verify one plain file on disk (used by tests and `preview`).
pub fn count_file(layout: &Layout, path: &Path) -> Result<u64, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    count(layout, BufReader::new(f))
}
