//! Integrity sidecars delivered after the data files: `NAME.sha256`
//! (sha256sum format), `NAME.md5`, a JSON manifest, and a control ("done")
//! file that is always last.

use super::naming::NameContext;
use super::BatchMeta;
use crate::config::Layout;
use crate::store::BatchFile;

/// (name, kind, content) of each sidecar, in delivery order.
pub(crate) fn sidecars(
    layout: &Layout,
    meta: &BatchMeta<'_>,
    data: &[BatchFile],
) -> Vec<(String, &'static str, Vec<u8>)> {
    let m = &layout.manifest;
    let mut out = Vec::new();
    if m.sha256_sidecar {
        for f in data {
            out.push((
                format!("{}.sha256", f.name),
                "sha256",
                format!("{}  {}\n", f.sha256, base(&f.name)).into_bytes(),
            ));
            if let Some(md5) = f.md5.as_ref().filter(|_| m.md5) {
                out.push((
                    format!("{}.md5", f.name),
                    "md5",
                    format!("{md5}  {}\n", base(&f.name)).into_bytes(),
                ));
            }
        }
    }
    let records: u64 = data.iter().map(|f| f.records).sum();
    let cx = NameContext {
        delivery: meta.delivery,
        batch_id: meta.id,
        at: meta.created,
        zone: layout.timezone.0,
        part: 0,
        parts: data.len() as u32,
        record_count: records,
    };
    if let Some(p) = &m.json {
        let files: Vec<serde_json::Value> = data
            .iter()
            .map(|f| {
                let mut v = serde_json::json!({
                    "name": f.name, "bytes": f.bytes, "records": f.records, "sha256": f.sha256,
                    "first_record": f.first_record, "last_record": f.last_record,
                });
                if let (Some(md5), true, Some(obj)) = (&f.md5, m.md5, v.as_object_mut()) {
                    obj.insert("md5".into(), md5.clone().into());
                }
                v
            })
            .collect();
        let doc = serde_json::json!({
            "batch_id": meta.id,
            "delivery": meta.delivery,
            "created": meta.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "format": layout.file.format.as_str(),
            "record_count": records,
            "files": files,
        });
        let mut text = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        text.push(b'\n');
        out.push((p.render(&cx), "manifest", text));
    }
    if let Some(p) = &m.done {
        let text = format!(
            "batch_id={}\nfiles={}\nrecords={records}\n",
            meta.id,
            data.len()
        );
        out.push((p.render(&cx), "done", text.into_bytes()));
    }
    out
}

fn base(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}
