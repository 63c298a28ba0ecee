//! Intake parsers: turn request bodies and files (JSON object, JSON array,
//! NDJSON, CSV) into records — compact JSON object text — with errors that
//! name the record and line. Parsing never stores anything; callers commit.

use serde_json::{Map, Value};
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// A record that could not be accepted, and where it was.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IntakeError {
    /// 1-based number of the record in the request or file, when known.
    pub record: Option<u64>,
    /// 1-based line in the input, when known.
    pub line: Option<u64>,
    pub message: String,
}

impl IntakeError {
    /// `record` is the 0-based index; it is reported 1-based.
    fn at(record: Option<u64>, line: Option<u64>, message: impl Into<String>) -> Self {
        IntakeError {
            record: record.map(|r| r + 1),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for IntakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.record, self.line) {
            (Some(r), Some(l)) => write!(f, "record {r} (line {l}): {}", self.message),
            (Some(r), None) => write!(f, "record {r}: {}", self.message),
            (None, Some(l)) => write!(f, "line {l}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for IntakeError {}

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Ndjson,
    Json,
}

impl Format {
    /// Guess from a file name: `.csv`, `.ndjson`/`.jsonl`, `.json`.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// A record exactly as the sender wrote it (numbers keep their spelling:
/// `1E5` stays `1E5`), after checking it is one JSON object within the limit.
fn check_raw(
    raw: &serde_json::value::RawValue,
    record: u64,
    line: Option<u64>,
    max_record: usize,
) -> Result<String, IntakeError> {
    let text = raw.get().trim();
    if !text.starts_with('{') {
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        return Err(IntakeError::at(
            Some(record),
            line,
            format!("expected a JSON object, found {}", kind(&v)),
        ));
    }
    if text.len() > max_record {
        return Err(IntakeError::at(
            Some(record),
            line,
            format!(
                "record is {} bytes, over the {max_record}-byte limit",
                text.len()
            ),
        ));
    }
    Ok(text.to_string())
}

fn check_object(
    v: Value,
    record: u64,
    line: Option<u64>,
    max_record: usize,
) -> Result<String, IntakeError> {
    match v {
        Value::Object(m) => {
            let text = serde_json::to_string(&m)
                .map_err(|e| IntakeError::at(Some(record), line, e.to_string()))?;
            if text.len() > max_record {
                return Err(IntakeError::at(
                    Some(record),
                    line,
                    format!(
                        "record is {} bytes, over the {max_record}-byte limit",
                        text.len()
                    ),
                ));
            }
            Ok(text)
        }
        other => Err(IntakeError::at(
            Some(record),
            line,
            format!("expected a JSON object, found {}", kind(&other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parse an HTTP body: one JSON object, a JSON array of objects, or NDJSON
/// (`ndjson` forces NDJSON). All or nothing: the first bad record fails it.
pub fn parse_body(
    body: &[u8],
    ndjson: bool,
    max_record: usize,
) -> Result<Vec<String>, IntakeError> {
    let body = body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|e| {
        IntakeError::at(
            None,
            None,
            format!("body is not UTF-8 (byte {})", e.valid_up_to()),
        )
    })?;
    let trimmed = text.trim_start();
    if !ndjson {
        if trimmed.starts_with('[') {
            let items: Vec<&serde_json::value::RawValue> =
                serde_json::from_str(text).map_err(|e| {
                    IntakeError::at(
                        None,
                        Some(e.line() as u64),
                        format!("invalid JSON array: {e}"),
                    )
                })?;
            return items
                .into_iter()
                .enumerate()
                .map(|(i, v)| check_raw(v, i as u64, None, max_record))
                .collect();
        }
        match serde_json::from_str::<&serde_json::value::RawValue>(text) {
            Ok(v) => return Ok(vec![check_raw(v, 0, Some(1), max_record)?]),
            Err(e) if e.is_syntax() && e.to_string().starts_with("trailing characters") => {}
            Err(e) if trimmed.is_empty() || e.is_eof() && trimmed.is_empty() => {
                return Err(IntakeError::at(
                    None,
                    None,
                    "empty body: send a JSON object, array or NDJSON",
                ))
            }
            Err(e) => {
                return Err(IntakeError::at(
                    Some(0),
                    Some(e.line() as u64),
                    format!("invalid JSON: {e}"),
                ))
            }
        }
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = out.len() as u64;
        let v: &serde_json::value::RawValue = serde_json::from_str(line).map_err(|e| {
            IntakeError::at(
                Some(record),
                Some(i as u64 + 1),
                format!("invalid JSON: {e}"),
            )
        })?;
        out.push(check_raw(v, record, Some(i as u64 + 1), max_record)?);
    }
    if out.is_empty() {
        return Err(IntakeError::at(None, None, "no records in body"));
    }
    Ok(out)
}

/// Stream records from a file in chunks of `chunk`. `sink` gets each chunk
/// and the number of input bytes read so far (for progress).
pub fn read_file(
    path: &Path,
    format: Format,
    max_record: usize,
    chunk: usize,
    sink: &mut dyn FnMut(Vec<String>, u64) -> Result<(), String>,
) -> Result<u64, IntakeError> {
    let file = std::fs::File::open(path)
        .map_err(|e| IntakeError::at(None, None, format!("cannot open: {e}")))?;
    let mut counter = CountingReader {
        inner: file,
        read: 0,
    };
    let mut total = 0u64;
    let mut buf = Vec::with_capacity(chunk);
    let mut flush = |buf: &mut Vec<String>, pos: u64| -> Result<(), IntakeError> {
        if !buf.is_empty() {
            sink(std::mem::take(buf), pos).map_err(|e| IntakeError::at(None, None, e))?;
        }
        Ok(())
    };
    match format {
        Format::Csv => {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(false)
                .from_reader(&mut counter);
            let headers: Vec<String> = rdr
                .headers()
                .map_err(|e| {
                    IntakeError::at(None, Some(1), format!("cannot read the header row: {e}"))
                })?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').to_string())
                .collect();
            if headers.iter().all(|h| h.is_empty()) {
                return Err(IntakeError::at(
                    None,
                    Some(1),
                    "the header row is empty: the first line must name the columns",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for h in &headers {
                if !seen.insert(h) {
                    return Err(IntakeError::at(
                        None,
                        Some(1),
                        format!("column {h:?} appears twice in the header row"),
                    ));
                }
            }
            let mut row = csv::StringRecord::new();
            loop {
                let more = rdr.read_record(&mut row).map_err(|e| {
                    let line = e.position().map(|p| p.line());
                    let msg = match e.kind() {
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => {
                            format!("row has {len} fields but the header has {expected_len}")
                        }
                        csv::ErrorKind::Utf8 { .. } => "row is not valid UTF-8".to_string(),
                        _ => e.to_string(),
                    };
                    IntakeError::at(Some(total), line, msg)
                })?;
                if !more {
                    break;
                }
                let line = row.position().map(|p| p.line());
                let mut m = Map::with_capacity(headers.len());
                for (h, v) in headers.iter().zip(row.iter()) {
                    m.insert(h.clone(), Value::String(v.to_string()));
                }
                buf.push(check_object(Value::Object(m), total, line, max_record)?);
                total += 1;
                if buf.len() >= chunk {
                    let pos = rdr.position().byte();
                    flush(&mut buf, pos)?;
                }
            }
            let pos = rdr.position().byte();
            flush(&mut buf, pos)?;
        }
        Format::Ndjson => {
            let reader = BufReader::with_capacity(1 << 20, &mut counter);
            let mut pos = 0u64;
            for (i, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| {
                    IntakeError::at(Some(total), Some(i as u64 + 1), format!("cannot read: {e}"))
                })?;
                pos += line.len() as u64 + 1;
                let line = if i == 0 {
                    line.trim_start_matches('\u{feff}').to_string()
                } else {
                    line
                };
                if line.trim().is_empty() {
                    continue;
                }
                let v: &serde_json::value::RawValue = serde_json::from_str(&line).map_err(|e| {
                    IntakeError::at(
                        Some(total),
                        Some(i as u64 + 1),
                        format!("invalid JSON: {e}"),
                    )
                })?;
                buf.push(check_raw(v, total, Some(i as u64 + 1), max_record)?);
                total += 1;
                if buf.len() >= chunk {
                    flush(&mut buf, pos)?;
                }
            }
            flush(&mut buf, pos)?;
        }
        Format::Json => {
            let mut text = Vec::new();
            counter
                .read_to_end(&mut text)
                .map_err(|e| IntakeError::at(None, None, format!("cannot read: {e}")))?;
            let records = parse_body(&text, false, max_record)?;
            total = records.len() as u64;
            for part in records.chunks(chunk.max(1)) {
                flush(&mut part.to_vec(), counter.read)?;
            }
        }
    }
    Ok(total)
}

struct CountingReader<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(
            parse_body(br#"{"a":1}"#, false, 1000).expect("one").len(),
            1
        );
        assert_eq!(
            parse_body(br#"[{"a":1},{"b":"x"}]"#, false, 1000)
                .expect("array")
                .len(),
            2
        );
        assert_eq!(
            parse_body(b"{\"a\":1}\n{\"a\":2}\n", false, 1000)
                .expect("ndjson")
                .len(),
            2
        );
        let e = parse_body(b"{\"a\":1}\n{\"a\":\n", false, 1000).unwrap_err();
        assert_eq!((e.record, e.line), (Some(2), Some(2)), "{e}");
        let e = parse_body(br#"[{"a":1}, 7]"#, false, 1000).unwrap_err();
        assert_eq!(e.record, Some(2));
        assert!(e.message.contains("object"));
        let e = parse_body(br#"{"a":"0123456789"}"#, false, 10).unwrap_err();
        assert!(e.message.contains("limit"), "{e}");
    }

    #[test]
    fn a_leading_bom_is_ignored() {
        assert_eq!(
            parse_body("\u{feff}{\"a\":1}\n{\"a\":2}".as_bytes(), true, 100)
                .expect("bom")
                .len(),
            2
        );
        assert_eq!(
            parse_body("\u{feff}[{\"a\":1}]".as_bytes(), false, 100)
                .expect("bom")
                .len(),
            1
        );
    }

    #[test]
    fn numbers_keep_their_spelling() {
        let r = parse_body(br#"[{"a":1E5,"b":1e400,"c":-0,"d":0.10}]"#, false, 1000).expect("ok");
        assert_eq!(r[0], r#"{"a":1E5,"b":1e400,"c":-0,"d":0.10}"#);
    }

    #[test]
    fn numbers_keep_their_digits() {
        let r = parse_body(
            br#"{"phone":5551234567,"id":123456789012345678901,"z":"02138"}"#,
            false,
            1000,
        )
        .expect("ok");
        assert_eq!(
            r[0],
            r#"{"phone":5551234567,"id":123456789012345678901,"z":"02138"}"#
        );
    }

    #[test]
    fn csv_file_with_quotes_and_bad_row() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("a.csv");
        std::fs::write(
            &p,
            "First Name,Company\nAnn,\"Mays, Inc\"\nBob,\"multi\nline\"\n",
        )
        .expect("write");
        let mut got = Vec::new();
        let n = read_file(&p, Format::Csv, 1000, 10, &mut |c, _| {
            got.extend(c);
            Ok(())
        })
        .expect("read");
        assert_eq!(n, 2);
        assert_eq!(got[0], r#"{"First Name":"Ann","Company":"Mays, Inc"}"#);
        assert_eq!(got[1], r#"{"First Name":"Bob","Company":"multi\nline"}"#);
        std::fs::write(&p, "a,b\n1,2\n3\n").expect("write");
        let e = read_file(&p, Format::Csv, 1000, 10, &mut |_, _| Ok(())).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("2"), "{e}");
    }
}
