//! The CSV encoder: a configured `csv::Writer` over any byte sink.

use crate::config::{CsvConfig, LineEnding};
use std::io::Write;

pub struct CsvEncoder<W: Write> {
    writer: csv::Writer<W>,
    null_value: String,
}

impl<W: Write> CsvEncoder<W> {
    /// Build the encoder; writes the BOM (if configured) to `sink` first.
    pub fn new(cfg: &CsvConfig, mut sink: W) -> std::io::Result<CsvEncoder<W>> {
        if cfg.bom {
            sink.write_all("\u{feff}".as_bytes())?;
        }
        let mut b = csv::WriterBuilder::new();
        // Config validation guarantees these are ASCII.
        b.delimiter(cfg.delimiter as u8)
            .quote(cfg.quote as u8)
            .terminator(match cfg.line_ending {
                LineEnding::Crlf => csv::Terminator::CRLF,
                LineEnding::Lf => csv::Terminator::Any(b'\n'),
            })
            .buffer_capacity(1 << 16);
        if let Some(e) = cfg.escape {
            if e != cfg.quote {
                b.double_quote(false).escape(e as u8);
            }
        }
        Ok(CsvEncoder {
            writer: b.from_writer(sink),
            null_value: cfg.null_value.clone(),
        })
    }

    pub fn field(&mut self, v: Option<&str>) -> csv::Result<()> {
        self.writer.write_field(v.unwrap_or(&self.null_value))
    }

    pub fn end_record(&mut self) -> csv::Result<()> {
        self.writer.write_record(None::<&[u8]>)
    }

    pub fn into_inner(self) -> std::io::Result<W> {
        self.writer.into_inner().map_err(|e| e.into_error())
    }
}
