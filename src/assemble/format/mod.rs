//! Record encoders, one per file format. An encoder turns records into bytes
//! for one part at a time: `begin` (header, XML root, JSON envelope),
//! `record` for each record, `end` (closing tags). Each part is a complete,
//! valid file.

mod csv;
mod fixed;
mod json;
mod xml;

use super::mapping::{Column, RawRecord};
use super::BatchMeta;
use crate::config::{FileFormat, Layout};

/// What a part's header may show.
pub(crate) struct PartInfo<'a> {
    pub meta: &'a BatchMeta<'a>,
    pub part: u32,
    /// Records this part will hold (known up front when the encoder needs it).
    pub records: u64,
}

/// Why a record could not be written (fixed width policies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject(pub String);

pub(crate) trait Encoder: Send {
    fn begin(&mut self, out: &mut Vec<u8>, part: &PartInfo<'_>);
    /// Append one record. `Err` rejects it (nothing is appended).
    fn record(&mut self, out: &mut Vec<u8>, rec: &RawRecord<'_>) -> Result<(), Reject>;
    fn end(&mut self, out: &mut Vec<u8>);
    /// Bytes `end` will write (for splitting by size).
    fn footer_len(&self) -> usize {
        0
    }
    /// Whether `begin` writes the part's record count (then parts are planned first).
    fn needs_count(&self) -> bool {
        false
    }
}

pub(crate) fn columns(layout: &Layout) -> Vec<Column> {
    layout
        .fields
        .iter()
        .map(|f| Column::new(&f.name, f.source.as_deref(), f.transform.clone()))
        .collect()
}

pub(crate) fn build(layout: &Layout) -> Result<Box<dyn Encoder>, String> {
    Ok(match layout.file.format {
        FileFormat::Csv => Box::new(csv::CsvEncoder::new(layout)?),
        FileFormat::Xml => Box::new(xml::XmlEncoder::new(layout)?),
        FileFormat::Json => Box::new(json::JsonEncoder::new(layout, false)?),
        FileFormat::Ndjson => Box::new(json::JsonEncoder::new(layout, true)?),
        FileFormat::FixedWidth => Box::new(fixed::FixedEncoder::new(layout)?),
    })
}

/// Problems with the layout for its format: (key path, message).
pub(crate) fn check(layout: &Layout) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match layout.file.format {
        FileFormat::Xml => out.extend(xml::check(layout)),
        FileFormat::FixedWidth => out.extend(fixed::check(layout)),
        FileFormat::Json | FileFormat::Ndjson => out.extend(json::check(layout)),
        FileFormat::Csv => {
            let c = &layout.csv;
            let mut chars = vec![("csv.delimiter", c.delimiter), ("csv.quote", c.quote)];
            chars.extend(c.escape.map(|e| ("csv.escape", e)));
            for (i, (k, ch)) in chars.iter().enumerate() {
                if matches!(ch, '\n' | '\r') {
                    out.push((
                        k.to_string(),
                        "a line break cannot be a CSV delimiter, quote or escape".into(),
                    ));
                }
                for (k2, ch2) in &chars[i + 1..] {
                    if ch == ch2 && !(*k2 == "csv.escape" && *k == "csv.quote") {
                        out.push((
                            k2.to_string(),
                            format!("{ch:?} is also the {}", k.trim_start_matches("csv.")),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Render `{batch_id} {record_count} {part} {delivery} {created}` in header templates.
pub(crate) fn header_template(t: &str, p: &PartInfo<'_>) -> String {
    t.replace("{batch_id}", p.meta.id)
        .replace("{record_count}", &p.records.to_string())
        .replace("{part}", &p.part.to_string())
        .replace("{delivery}", p.meta.delivery)
        .replace(
            "{created}",
            &p.meta
                .created
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
}
