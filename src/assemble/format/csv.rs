//! CSV: dialect, quoting style, optional formula-injection protection.

use super::{columns, Encoder, PartInfo, Reject};
use crate::assemble::mapping::{Column, RawRecord};
use crate::config::{CsvConfig, Layout, LineEnding, QuoteStyle};
use std::borrow::Cow;

pub(crate) struct CsvEncoder {
    cfg: CsvConfig,
    writer: csv_core::Writer,
    scratch: Box<[u8; SCRATCH]>,
    cols: Vec<Column>,
    header_due: bool,
}

/// Scratch space for csv_core, which writes into a fixed slice.
const SCRATCH: usize = 4096;

impl CsvEncoder {
    pub fn new(layout: &Layout) -> Result<Self, String> {
        let cfg = layout.csv.clone();
        let mut b = csv_core::WriterBuilder::new();
        // Config validation guarantees these are ASCII.
        b.delimiter(cfg.delimiter as u8)
            .quote(cfg.quote as u8)
            .quote_style(match cfg.quote_style {
                QuoteStyle::Necessary => csv_core::QuoteStyle::Necessary,
                QuoteStyle::Always => csv_core::QuoteStyle::Always,
                QuoteStyle::Never => csv_core::QuoteStyle::Never,
                QuoteStyle::NonNumeric => csv_core::QuoteStyle::NonNumeric,
            })
            .terminator(match cfg.line_ending {
                LineEnding::Crlf => csv_core::Terminator::CRLF,
                LineEnding::Lf => csv_core::Terminator::Any(b'\n'),
            });
        if let Some(e) = cfg.escape {
            if e != cfg.quote {
                b.double_quote(false).escape(e as u8);
            }
        }
        Ok(CsvEncoder {
            writer: b.build(),
            scratch: Box::new([0u8; SCRATCH]),
            cols: columns(layout),
            header_due: false,
            cfg,
        })
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        row(
            &mut self.writer,
            &mut self.scratch,
            out,
            self.cols.iter().map(|c| Cow::Borrowed(c.name.as_str())),
        );
    }
}

/// Append one row to `out`.
fn row<'a>(
    writer: &mut csv_core::Writer,
    scratch: &mut [u8; SCRATCH],
    out: &mut Vec<u8>,
    cells: impl Iterator<Item = Cow<'a, str>>,
) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            let (_, n) = writer.delimiter(scratch);
            out.extend_from_slice(&scratch[..n]);
        }
        let mut input = cell.as_bytes();
        loop {
            let (res, nin, nout) = writer.field(input, scratch);
            out.extend_from_slice(&scratch[..nout]);
            input = &input[nin..];
            if res == csv_core::WriteResult::InputEmpty {
                break;
            }
        }
    }
    let (_, n) = writer.terminator(scratch);
    out.extend_from_slice(&scratch[..n]);
}

/// A cell a spreadsheet would run as a formula gets a leading `'`; numbers
/// such as `-12.50` or `+1` stay as they are.
fn protect(v: &str) -> Cow<'_, str> {
    match v.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => {
            let numeric = v.len() > 1
                && v[1..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b',')
                && v[1..].bytes().any(|b| b.is_ascii_digit());
            if numeric && (v.starts_with('-') || v.starts_with('+')) {
                Cow::Borrowed(v)
            } else {
                Cow::Owned(format!("'{v}"))
            }
        }
        _ => Cow::Borrowed(v),
    }
}

impl Encoder for CsvEncoder {
    fn begin(&mut self, out: &mut Vec<u8>, _part: &PartInfo<'_>) {
        if self.cfg.bom {
            out.extend_from_slice("\u{feff}".as_bytes());
        }
        if self.cfg.header {
            if self.cols.is_empty() {
                self.header_due = true;
            } else {
                self.header(out);
            }
        }
    }

    fn record(&mut self, out: &mut Vec<u8>, rec: &RawRecord<'_>) -> Result<(), Reject> {
        if self.cols.is_empty() {
            self.cols = rec
                .keys()
                .map(|k| Column::new(k, None, Vec::new()))
                .collect();
        }
        if self.header_due {
            self.header_due = false;
            self.header(out);
        }
        let protect_on = self.cfg.formula_protection;
        let null = self.cfg.null_value.as_str();
        // With an escape character, the csv crate escapes quotes but not the
        // escape character itself: double it so readers get it back.
        let esc = self.cfg.escape.filter(|e| *e != self.cfg.quote);
        let cells = self.cols.iter().map(|c| {
            let v = c.value(rec).unwrap_or(Cow::Borrowed(null));
            match (protect_on, v) {
                (true, Cow::Borrowed(b)) => protect(b),
                (true, Cow::Owned(o)) => Cow::Owned(protect(&o).into_owned()),
                (false, v) => v,
            }
        });
        let cells = cells.map(|v| match esc {
            Some(e) if v.contains(e) => Cow::Owned(v.replace(e, &format!("{e}{e}"))),
            _ => v,
        });
        row(&mut self.writer, &mut self.scratch, out, cells);
        Ok(())
    }

    fn end(&mut self, _out: &mut Vec<u8>) {
        self.header_due = false;
    }
}

#[cfg(test)]
mod tests {
    use super::protect;

    #[test]
    fn formula_protection() {
        assert_eq!(protect("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(protect("@cmd"), "'@cmd");
        assert_eq!(protect("+1 555"), "'+1 555");
        assert_eq!(protect("-12.50"), "-12.50");
        assert_eq!(protect("+42"), "+42");
        assert_eq!(protect("\tx"), "'\tx");
        assert_eq!(protect("-"), "'-");
        assert_eq!(protect("plain"), "plain");
    }
}
