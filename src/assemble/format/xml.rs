//! XML: configurable root and record elements, root attributes, nesting and
//! attributes from the mapping; text escaped, characters illegal in XML 1.0
//! removed or replaced.

use super::{columns, header_template, Encoder, PartInfo, Reject};
use crate::assemble::mapping::{Column, RawRecord};
use crate::assemble::tree::{Child, Tree};
use crate::config::{IllegalChars, Layout, NullPolicy, XmlConfig};
use std::borrow::Cow;

pub(crate) struct XmlEncoder {
    cfg: XmlConfig,
    cols: Vec<Column>,
    tree: Tree,
    footer: String,
}

impl XmlEncoder {
    pub fn new(layout: &Layout) -> Result<Self, String> {
        let cols = columns(layout);
        if cols.is_empty() {
            return Err("xml needs [[delivery.field]] entries (element names)".into());
        }
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        let tree = Tree::build(&names, true)?;
        let cfg = layout.xml.clone();
        let footer = format!("</{}>\n", cfg.root);
        Ok(XmlEncoder {
            cfg,
            cols,
            tree,
            footer,
        })
    }

    fn clean<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let legal = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
        if s.chars().all(legal) {
            return Cow::Borrowed(s);
        }
        Cow::Owned(
            s.chars()
                .filter_map(|c| match (legal(c), self.cfg.illegal_chars) {
                    (true, _) => Some(c),
                    (false, IllegalChars::Remove) => None,
                    (false, IllegalChars::Replace) => Some('\u{FFFD}'),
                })
                .collect(),
        )
    }

    fn text(&self, out: &mut Vec<u8>, s: &str) {
        let cleaned = self.clean(s);
        out.extend_from_slice(quick_xml::escape::escape(cleaned.as_ref()).as_bytes());
    }

    /// Attribute values: like text, plus line breaks and tabs as character
    /// references (parsers would normalise raw ones to spaces).
    fn attr_text(&self, out: &mut Vec<u8>, s: &str) {
        let cleaned = self.clean(s);
        for b in quick_xml::escape::escape(cleaned.as_ref()).bytes() {
            match b {
                b'\n' => out.extend_from_slice(b"&#10;"),
                b'\r' => out.extend_from_slice(b"&#13;"),
                b'\t' => out.extend_from_slice(b"&#9;"),
                _ => out.push(b),
            }
        }
    }

    fn attrs(&self, out: &mut Vec<u8>, attrs: &[(String, usize)], rec: &RawRecord<'_>) {
        for (name, col) in attrs {
            let v = self.cols[*col].value(rec);
            if v.is_none() && self.cfg.null == NullPolicy::Omit {
                continue;
            }
            out.push(b' ');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"=\"");
            self.attr_text(out, v.as_deref().unwrap_or(""));
            out.push(b'"');
        }
    }

    fn newline(&self, out: &mut Vec<u8>, depth: usize) {
        if self.cfg.indent > 0 {
            out.push(b'\n');
            out.extend(std::iter::repeat_n(b' ', depth * self.cfg.indent));
        }
    }

    fn children(&self, out: &mut Vec<u8>, tree: &Tree, rec: &RawRecord<'_>, depth: usize) {
        for c in &tree.children {
            match c {
                Child::Leaf(name, col) => {
                    let v = self.cols[*col].value(rec);
                    if v.is_none() && self.cfg.null == NullPolicy::Omit {
                        continue;
                    }
                    self.newline(out, depth);
                    out.push(b'<');
                    out.extend_from_slice(name.as_bytes());
                    match v.as_deref() {
                        None | Some("") => out.extend_from_slice(b"/>"),
                        Some(s) => {
                            out.push(b'>');
                            self.text(out, s);
                            out.extend_from_slice(b"</");
                            out.extend_from_slice(name.as_bytes());
                            out.push(b'>');
                        }
                    }
                }
                Child::Group(name, sub) => {
                    self.newline(out, depth);
                    out.push(b'<');
                    out.extend_from_slice(name.as_bytes());
                    self.attrs(out, &sub.attrs, rec);
                    out.push(b'>');
                    self.children(out, sub, rec, depth + 1);
                    self.newline(out, depth);
                    out.extend_from_slice(b"</");
                    out.extend_from_slice(name.as_bytes());
                    out.push(b'>');
                }
            }
        }
    }
}

impl Encoder for XmlEncoder {
    fn begin(&mut self, out: &mut Vec<u8>, part: &PartInfo<'_>) {
        if self.cfg.declaration {
            out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        }
        out.push(b'<');
        out.extend_from_slice(self.cfg.root.as_bytes());
        for (k, t) in &self.cfg.root_attributes {
            out.push(b' ');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"=\"");
            let v = header_template(t, part);
            self.attr_text(out, &v);
            out.push(b'"');
        }
        out.extend_from_slice(b">\n");
    }

    fn record(&mut self, out: &mut Vec<u8>, rec: &RawRecord<'_>) -> Result<(), Reject> {
        let depth = 1;
        out.extend(std::iter::repeat_n(b' ', depth * self.cfg.indent));
        out.push(b'<');
        out.extend_from_slice(self.cfg.record.as_bytes());
        self.attrs(out, &self.tree.attrs, rec);
        out.push(b'>');
        self.children(out, &self.tree, rec, depth + 1);
        self.newline(out, depth);
        out.extend_from_slice(b"</");
        out.extend_from_slice(self.cfg.record.as_bytes());
        out.extend_from_slice(b">\n");
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.footer.as_bytes());
    }

    fn footer_len(&self) -> usize {
        self.footer.len()
    }

    fn needs_count(&self) -> bool {
        self.cfg
            .root_attributes
            .values()
            .any(|v| v.contains("{record_count}"))
    }
}

/// An XML 1.0 name without namespaces, not starting with `xml`.
pub(crate) fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && !s.to_ascii_lowercase().starts_with("xml")
}

pub(crate) fn check(layout: &Layout) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let cfg = &layout.xml;
    for (key, name) in [("xml.root", &cfg.root), ("xml.record", &cfg.record)] {
        if !valid_name(name) {
            out.push((
                key.to_string(),
                format!("{name:?} is not a valid XML element name"),
            ));
        }
    }
    for (k, v) in &cfg.root_attributes {
        let mut rest = v.as_str();
        while let Some(i) = rest.find('{') {
            let end = rest[i..].find('}').map_or(rest.len(), |e| i + e + 1);
            let ph = &rest[i..end];
            if ![
                "{batch_id}",
                "{record_count}",
                "{part}",
                "{delivery}",
                "{created}",
            ]
            .contains(&ph)
            {
                out.push((
                    "xml.root_attributes".into(),
                    format!("{k}: unknown placeholder {ph}; known: {{batch_id}} {{record_count}} {{part}} {{delivery}} {{created}}"),
                ));
            }
            rest = &rest[end..];
        }
        if !valid_name(k) {
            out.push((
                "xml.root_attributes".into(),
                format!("{k:?} is not a valid XML attribute name"),
            ));
        }
    }
    if layout.fields.is_empty() {
        out.push((
            "field".into(),
            "format xml needs [[delivery.field]] entries".into(),
        ));
    }
    let names: Vec<&str> = layout.fields.iter().map(|f| f.name.as_str()).collect();
    match Tree::build(&names, true) {
        Ok(t) => {
            for n in t.names() {
                if !valid_name(n) {
                    out.push((
                        "field".into(),
                        format!("{n:?} is not a valid XML element or attribute name"),
                    ));
                }
            }
        }
        Err(e) => out.push(("field".into(), e)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_keep_line_breaks_and_tabs() {
        let layout = Layout {
            fields: vec![crate::config::FieldConfig {
                name: "@note".into(),
                source: Some("note".into()),
                transform: vec![],
                start: None,
                length: None,
                align: None,
                fill: None,
            }],
            ..Layout::default()
        };
        let mut enc = XmlEncoder::new(&layout).expect("encoder");
        let mut out = Vec::new();
        let rec = RawRecord::parse(r#"{"note":"a\nb\r\nc\td & e"}"#).expect("json");
        enc.record(&mut out, &rec).expect("record");
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.contains(r#"note="a&#10;b&#13;&#10;c&#9;d &amp; e""#),
            "{text}"
        );
    }

    #[test]
    fn names() {
        assert!(valid_name("lead"));
        assert!(valid_name("first_name"));
        assert!(valid_name("état"));
        assert!(!valid_name("1st"));
        assert!(!valid_name("first name"));
        assert!(!valid_name("xmlThing"));
        assert!(!valid_name("a:b"));
        assert!(!valid_name(""));
    }
}
