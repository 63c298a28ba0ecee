//! JSON: an envelope `{"batch_info": {...}, "leads": [...]}` with
//! configurable keys, or NDJSON. Values pass through as received (large
//! integers and zero-padded strings stay exact) unless a transform changed them.

use super::{columns, Encoder, PartInfo, Reject};
use crate::assemble::mapping::{Column, JsonValue, RawRecord};
use crate::assemble::tree::{Child, Tree};
use crate::config::{JsonConfig, Layout, NullPolicy};

pub(crate) struct JsonEncoder {
    cfg: JsonConfig,
    ndjson: bool,
    cols: Vec<Column>,
    tree: Option<Tree>,
    first: bool,
}

impl JsonEncoder {
    pub fn new(layout: &Layout, ndjson: bool) -> Result<Self, String> {
        let cols = columns(layout);
        let tree = if cols.is_empty() {
            None
        } else {
            let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
            Some(Tree::build(&names, false)?)
        };
        Ok(JsonEncoder {
            cfg: layout.json.clone(),
            ndjson,
            cols,
            tree,
            first: true,
        })
    }

    fn object(&self, out: &mut Vec<u8>, tree: &Tree, rec: &RawRecord<'_>) {
        out.push(b'{');
        let mut first = true;
        for c in &tree.children {
            let (name, value) = match c {
                Child::Leaf(name, col) => (name, Some(self.cols[*col].json_value(rec))),
                Child::Group(name, _) => (name, None),
            };
            if let Some(JsonValue::Missing) = value {
                if self.cfg.null == NullPolicy::Omit {
                    continue;
                }
            }
            if !first {
                out.push(b',');
            }
            first = false;
            string(out, name);
            out.push(b':');
            match (c, value) {
                (Child::Group(_, sub), _) => self.object(out, sub, rec),
                (_, Some(JsonValue::Raw(raw))) => out.extend_from_slice(raw.get().as_bytes()),
                (_, Some(JsonValue::Text(t))) => string(out, &t),
                _ => out.extend_from_slice(b"null"),
            }
        }
        out.push(b'}');
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

impl Encoder for JsonEncoder {
    fn begin(&mut self, out: &mut Vec<u8>, part: &PartInfo<'_>) {
        self.first = true;
        if self.ndjson {
            return;
        }
        out.push(b'{');
        string(out, &self.cfg.info_key);
        out.extend_from_slice(b":{");
        string(out, &self.cfg.id_key);
        out.push(b':');
        string(out, part.meta.id);
        out.push(b',');
        string(out, &self.cfg.created_key);
        out.push(b':');
        string(
            out,
            &part
                .meta
                .created
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        out.push(b',');
        string(out, &self.cfg.count_key);
        out.push(b':');
        out.extend_from_slice(part.records.to_string().as_bytes());
        out.extend_from_slice(b"},");
        string(out, &self.cfg.records_key);
        out.extend_from_slice(b":[");
    }

    fn record(&mut self, out: &mut Vec<u8>, rec: &RawRecord<'_>) -> Result<(), Reject> {
        if !self.ndjson {
            out.extend_from_slice(if self.first { b"\n" } else { b",\n" });
        }
        self.first = false;
        match &self.tree {
            Some(t) => self.object(out, t, rec),
            None => {
                // No mapping: the record as received.
                out.push(b'{');
                for (i, (k, v)) in rec.entries().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    string(out, k);
                    out.push(b':');
                    out.extend_from_slice(v.get().as_bytes());
                }
                out.push(b'}');
            }
        }
        if self.ndjson {
            out.push(b'\n');
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if !self.ndjson {
            out.extend_from_slice(b"\n]}\n");
        }
    }

    fn footer_len(&self) -> usize {
        if self.ndjson {
            0
        } else {
            4
        }
    }

    fn needs_count(&self) -> bool {
        !self.ndjson
    }
}

pub(crate) fn check(layout: &Layout) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let names: Vec<&str> = layout.fields.iter().map(|f| f.name.as_str()).collect();
    if let Err(e) = Tree::build(&names, false) {
        out.push(("field".into(), e));
    }
    if layout.file.format == crate::config::FileFormat::Json {
        let j = &layout.json;
        for (k, v) in [
            ("json.info_key", &j.info_key),
            ("json.records_key", &j.records_key),
            ("json.id_key", &j.id_key),
            ("json.created_key", &j.created_key),
            ("json.count_key", &j.count_key),
        ] {
            if v.is_empty() {
                out.push((k.into(), "must not be empty".into()));
            }
        }
        if j.info_key == j.records_key {
            out.push((
                "json.records_key".into(),
                "must differ from info_key".into(),
            ));
        }
    }
    out
}
