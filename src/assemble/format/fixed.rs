//! Fixed width: each field at a start column with a length in bytes of the
//! output encoding, padded left or right; every line has the same length.

use super::{columns, Encoder, PartInfo, Reject};
use crate::assemble::mapping::{Column, RawRecord};
use crate::config::{Align, FixedWidthConfig, Layout, Overflow, Unmappable};

/// The output encoding.
#[derive(Clone, Copy)]
enum Enc {
    Utf8,
    /// ISO-8859-1 exactly: U+0000..=U+00FF map to one byte each.
    Latin1,
    /// 7-bit ASCII.
    Ascii,
    Other(&'static encoding_rs::Encoding),
}

impl Enc {
    /// `utf-8`, `iso-8859-1` (exact Latin-1), `us-ascii`, or an encoding_rs
    /// encoding by its canonical name (`windows-1252`, `ISO-8859-2`,
    /// `Shift_JIS`…). WHATWG aliases that silently mean another encoding
    /// (`latin1` → windows-1252, `utf-16le` → UTF-8 output) are refused.
    fn from_label(label: &str) -> Option<Enc> {
        match label.to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => Some(Enc::Utf8),
            "iso-8859-1" | "latin1" | "latin-1" | "iso8859-1" => Some(Enc::Latin1),
            "us-ascii" | "ascii" => Some(Enc::Ascii),
            _ => encoding_rs::Encoding::for_label(label.as_bytes())
                .filter(|e| e.name().eq_ignore_ascii_case(label) && e.output_encoding() == *e)
                .map(Enc::Other),
        }
    }

    /// Bytes of one character, or `None` when the encoding cannot represent it.
    fn char(self, c: char, buf: &mut [u8; 8]) -> Option<usize> {
        match self {
            Enc::Utf8 => Some(c.encode_utf8(buf).len()),
            Enc::Latin1 | Enc::Ascii => {
                let n = c as u32;
                let max = if matches!(self, Enc::Ascii) {
                    0x7F
                } else {
                    0xFF
                };
                (n <= max).then(|| {
                    buf[0] = n as u8;
                    1
                })
            }
            Enc::Other(e) => {
                let mut s = [0u8; 4];
                let (bytes, _, bad) = e.encode(c.encode_utf8(&mut s));
                if bad || bytes.len() > buf.len() {
                    return None;
                }
                buf[..bytes.len()].copy_from_slice(&bytes);
                Some(bytes.len())
            }
        }
    }
}

/// Line breaks, tabs and other controls would break the layout: a space.
fn flat(c: char) -> char {
    if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}') {
        ' '
    } else {
        c
    }
}

struct Field {
    col: Column,
    start: usize,
    length: usize,
    align: Align,
    fill: u8,
}

pub(crate) struct FixedEncoder {
    cfg: FixedWidthConfig,
    enc: Enc,
    fields: Vec<Field>,
    width: usize,
    line_ending: &'static [u8],
}

/// Place fields: (start 0-based, length) in config order.
/// (key path, message) problems.
type Problems = Vec<(String, String)>;

fn place(layout: &Layout) -> Result<Vec<(usize, usize)>, Problems> {
    let mut errs = Vec::new();
    let mut out = Vec::new();
    let mut next = 1usize;
    for f in &layout.fields {
        let key = format!("field[{}]", f.name);
        let Some(length) = f.length.filter(|l| *l > 0) else {
            errs.push((
                format!("{key}.length"),
                "fixed width fields need a length of at least 1".into(),
            ));
            continue;
        };
        let start = f.start.unwrap_or(next);
        if start < next {
            errs.push((format!("{key}.start"), format!("starts at {start} but the previous field ends at {}: fields must not overlap and must be in order", next - 1)));
        }
        if start == 0 {
            errs.push((format!("{key}.start"), "columns are 1-based".into()));
            continue;
        }
        out.push((start - 1, length));
        next = start + length;
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

impl FixedEncoder {
    pub fn new(layout: &Layout) -> Result<Self, String> {
        let cfg = layout.fixed_width.clone();
        let enc = Enc::from_label(&cfg.encoding)
            .ok_or_else(|| format!("unknown encoding {:?}", cfg.encoding))?;
        let places = place(layout).map_err(|e| {
            e.into_iter()
                .map(|(k, m)| format!("{k}: {m}"))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let mut fields = Vec::new();
        for ((f, col), (start, length)) in layout.fields.iter().zip(columns(layout)).zip(places) {
            let mut b = [0u8; 8];
            let fill = f.fill.unwrap_or(' ');
            let fill = match enc.char(fill, &mut b) {
                Some(1) => b[0],
                _ => {
                    return Err(format!(
                        "field {}: fill {fill:?} is not one byte in {}",
                        f.name, cfg.encoding
                    ))
                }
            };
            fields.push(Field {
                col,
                start,
                length,
                align: f.align.unwrap_or_default(),
                fill,
            });
        }
        let width = fields.iter().map(|f| f.start + f.length).max().unwrap_or(0);
        Ok(FixedEncoder {
            line_ending: cfg.line_ending.bytes(),
            cfg,
            enc,
            fields,
            width,
        })
    }

    /// Encode `text` into at most `length` bytes, following the policies.
    fn encode(
        &self,
        name: &str,
        text: &str,
        length: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Reject> {
        let mut b = [0u8; 8];
        let start = out.len();
        let push = |bytes: &[u8], out: &mut Vec<u8>| -> Result<bool, Reject> {
            if out.len() - start + bytes.len() > length {
                return match self.cfg.overflow {
                    Overflow::Truncate => Ok(false),
                    Overflow::Reject => Err(Reject(format!(
                        "field {name}: value {text:?} is longer than {length} bytes"
                    ))),
                };
            }
            out.extend_from_slice(bytes);
            Ok(true)
        };
        for c in text.chars() {
            let c = flat(c);
            let ok = match self.enc.char(c, &mut b) {
                Some(n) => push(&b[..n], out)?,
                None => match self.cfg.unmappable {
                    Unmappable::Reject => {
                        return Err(Reject(format!(
                            "field {name}: {c:?} cannot be written in {}",
                            self.cfg.encoding
                        )))
                    }
                    Unmappable::Replace => {
                        let n = self.enc.char(self.cfg.replacement, &mut b).unwrap_or(0);
                        push(&b[..n], out)?
                    }
                    Unmappable::Transliterate => {
                        let mut all = true;
                        let plain = deunicode::deunicode_char(c)
                            .filter(|s| !s.is_empty())
                            .unwrap_or("?");
                        for t in plain.chars() {
                            let n = self.enc.char(flat(t), &mut b).unwrap_or(0);
                            if !push(&b[..n], out)? {
                                all = false;
                                break;
                            }
                        }
                        all
                    }
                },
            };
            if !ok {
                break;
            }
        }
        Ok(())
    }
}

impl Encoder for FixedEncoder {
    fn begin(&mut self, _out: &mut Vec<u8>, _part: &PartInfo<'_>) {}

    fn record(&mut self, out: &mut Vec<u8>, rec: &RawRecord<'_>) -> Result<(), Reject> {
        let line_start = out.len();
        let mut value = Vec::with_capacity(64);
        for f in &self.fields {
            let pos = out.len() - line_start;
            out.extend(std::iter::repeat_n(b' ', f.start.saturating_sub(pos)));
            value.clear();
            let text = f.col.value(rec);
            if let Err(e) = self.encode(
                &f.col.name,
                text.as_deref().unwrap_or(""),
                f.length,
                &mut value,
            ) {
                out.truncate(line_start);
                return Err(e);
            }
            let pad = f.length - value.len();
            match f.align {
                Align::Left => {
                    out.extend_from_slice(&value);
                    out.extend(std::iter::repeat_n(f.fill, pad));
                }
                Align::Right => {
                    // Zero fill keeps the sign in front: -0042.
                    let signed = f.fill == b'0' && matches!(value.first(), Some(b'-' | b'+'));
                    if signed {
                        out.push(value[0]);
                        out.extend(std::iter::repeat_n(b'0', pad));
                        out.extend_from_slice(&value[1..]);
                    } else {
                        out.extend(std::iter::repeat_n(f.fill, pad));
                        out.extend_from_slice(&value);
                    }
                }
            }
        }
        let pos = out.len() - line_start;
        out.extend(std::iter::repeat_n(b' ', self.width.saturating_sub(pos)));
        out.extend_from_slice(self.line_ending);
        Ok(())
    }

    fn end(&mut self, _out: &mut Vec<u8>) {}
}

pub(crate) fn check(layout: &Layout) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if layout.fields.is_empty() {
        out.push((
            "field".into(),
            "format fixed_width needs [[delivery.field]] entries with start/length".into(),
        ));
    }
    let Some(enc) = Enc::from_label(&layout.fixed_width.encoding) else {
        out.push((
            "fixed_width.encoding".into(),
            format!(
                "unknown encoding {:?} (utf-8, iso-8859-1, windows-1252, …)",
                layout.fixed_width.encoding
            ),
        ));
        return out;
    };
    if let Err(e) = place(layout) {
        out.extend(e);
    }
    let mut b = [0u8; 8];
    for f in &layout.fields {
        let fill = f.fill.unwrap_or(' ');
        if fill.is_control() {
            out.push((
                format!("field[{}].fill", f.name),
                format!("{fill:?} is a control character"),
            ));
        } else if enc.char(fill, &mut b) != Some(1) {
            out.push((
                format!("field[{}].fill", f.name),
                format!(
                    "{fill:?} is not one byte in {}",
                    layout.fixed_width.encoding
                ),
            ));
        }
    }
    if enc.char(layout.fixed_width.replacement, &mut b).is_none() {
        out.push((
            "fixed_width.replacement".into(),
            "the replacement character cannot be written in the encoding".into(),
        ));
    }
    out
}
