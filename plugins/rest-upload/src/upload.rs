//! Sending the files of a batch: chunked PUTs or multipart POSTs.

use consign_plugin::http::{encode_component, Request};
use consign_plugin::{Batch, Error, FileInfo, Receipt, Result};

use crate::auth::Auth;
use crate::reply;
use crate::settings::{Mode, Settings, Stream};

/// Deliver every pending file; `part-accepted` after each one.
pub fn deliver(settings: &Settings, auth: &Auth, batch: &Batch) -> Result<Receipt> {
    let mut receipt = Receipt::default();
    let (mut files, mut bytes, mut requests) = (0usize, 0u64, 0usize);
    for file in batch.pending() {
        let (id, sent) = match settings.mode {
            Mode::Chunks => put_chunks(settings, auth, batch, file)?,
            Mode::Multipart => post_multipart(settings, auth, batch, file)?,
        };
        consign_plugin::part_accepted(file.part);
        consign_plugin::debug!(
            "part {} ({}) uploaded in {sent} requests",
            file.part,
            file.name
        );
        receipt.remote_ids.push(id);
        files += 1;
        bytes += file.size;
        requests += sent;
    }
    let skipped = batch.files.len() - files;
    let mode = match settings.mode {
        Mode::Chunks => "chunks",
        Mode::Multipart => "multipart",
    };
    receipt.message = format!(
        "uploaded {files} files ({bytes} bytes, {requests} requests, {mode}) to {}{}",
        settings.endpoint,
        if skipped > 0 {
            format!("; {skipped} already delivered")
        } else {
            String::new()
        }
    );
    Ok(receipt)
}

/// One chunk of a file: bytes `start..=end` (inclusive; `end < start` for
/// an empty file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub index: u64,
    pub count: u64,
    pub start: u64,
    pub len: u64,
}

impl Chunk {
    /// `Content-Range` for this chunk of a `total`-byte file.
    pub fn content_range(&self, total: u64) -> String {
        if self.len == 0 {
            format!("bytes */{total}")
        } else {
            format!("bytes {}-{}/{total}", self.start, self.start + self.len - 1)
        }
    }
}

/// The chunks of a `size`-byte file (one empty chunk for an empty file).
pub fn chunks(size: u64, chunk_bytes: u64) -> Vec<Chunk> {
    let count = size.div_ceil(chunk_bytes).max(1);
    (0..count)
        .map(|index| {
            let start = index * chunk_bytes;
            Chunk {
                index,
                count,
                start,
                len: chunk_bytes.min(size - start.min(size)),
            }
        })
        .collect()
}

fn put_chunks(
    settings: &Settings,
    auth: &Auth,
    batch: &Batch,
    file: &FileInfo,
) -> Result<(String, usize)> {
    let url = settings.url(&format!(
        "{}/{}",
        encode_component(&batch.id),
        encode_component(&file.name)
    ));
    let in_guest = settings.stream == Stream::Guest || auth.needs_body();
    let reader = if in_guest { Some(file.open()?) } else { None };
    let plan = chunks(file.size, settings.chunk_bytes);
    for chunk in &plan {
        let what = || {
            format!(
                "PUT {url} (part {}, chunk {}/{})",
                file.part,
                chunk.index + 1,
                chunk.count
            )
        };
        let request = Request::put(url.as_str())
            .header("Content-Type", "application/octet-stream")
            .header("X-Batch-Id", batch.id.as_str())
            .header("X-Part", file.part.to_string())
            .header("X-Chunk-Index", chunk.index.to_string())
            .header("X-Chunk-Count", chunk.count.to_string())
            .header("Content-Range", chunk.content_range(file.size))
            .header("X-Content-Sha256", file.sha256.as_str())
            .header(
                "Idempotency-Key",
                format!("{}-{}-{}", batch.id, file.part, chunk.index),
            );
        let request = match &reader {
            Some(r) => {
                let body = r
                    .read_range(chunk.start, chunk.len)
                    .map_err(|e| Error::permanent(format!("{}: {e}", what())))?;
                if body.len() as u64 != chunk.len {
                    return Err(Error::permanent(format!(
                        "{}: the file ended after {} of {} bytes",
                        what(),
                        chunk.start + body.len() as u64,
                        file.size
                    )));
                }
                auth.sign(request, &body)?.bytes(body)
            }
            None => auth
                .sign(request, b"")?
                .file_range(file.part, chunk.start, chunk.len),
        };
        send(settings, request).map_err(|e| locate(e, what()))?;
    }
    Ok((format!("{}/{}", batch.id, file.name), plan.len()))
}

fn post_multipart(
    settings: &Settings,
    auth: &Auth,
    batch: &Batch,
    file: &FileInfo,
) -> Result<(String, usize)> {
    let what = || format!("POST {} (part {})", settings.endpoint, file.part);
    let content = file
        .open()?
        .read_range(0, file.size)
        .map_err(|e| Error::permanent(format!("{}: {e}", what())))?;
    let boundary = format!("consign-{}-{}", sanitize(&batch.id), file.part);
    let body = multipart_body(&boundary, batch, file, &content);
    let request = Request::post(settings.endpoint.as_str())
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("X-Batch-Id", batch.id.as_str())
        .header("X-Part", file.part.to_string())
        .header("Idempotency-Key", format!("{}-{}-0", batch.id, file.part));
    let request = auth.sign(request, &body)?.bytes(body);
    send(settings, request).map_err(|e| locate(e, what()))?;
    Ok((format!("{}/{}", batch.id, file.name), 1))
}

/// Say which request failed, except in a rejection: its message is the
/// partner's own words (the status or `DUPLICATE` is the code).
fn locate(e: Error, what: String) -> Error {
    match e {
        Error::Rejected { .. } => e,
        other => other.context(what),
    }
}

fn send(settings: &Settings, request: Request) -> Result<()> {
    let request = match settings.timeout {
        Some(t) => request.timeout(t),
        None => request,
    };
    reply::classify(request.send()?).map(drop)
}

/// The multipart/form-data body: fields batch_id, part, name, sha256,
/// records, then the file.
pub fn multipart_body(boundary: &str, batch: &Batch, file: &FileInfo, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 1024);
    let fields = [
        ("batch_id", batch.id.clone()),
        ("part", file.part.to_string()),
        ("name", file.name.clone()),
        ("sha256", file.sha256.clone()),
        ("records", file.records.to_string()),
    ];
    for (name, value) in fields {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            quote(&file.name)
        )
        .as_bytes(),
    );
    out.extend_from_slice(content);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// A file name safe inside a quoted header parameter.
fn quote(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '"' | '\\' | '\r' | '\n' => '_',
            c => c,
        })
        .collect()
}

/// Only characters a multipart boundary may contain.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_plan() {
        let c = chunks(10, 4);
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[2],
            Chunk {
                index: 2,
                count: 3,
                start: 8,
                len: 2
            }
        );
        assert_eq!(c[0].content_range(10), "bytes 0-3/10");
        assert_eq!(c[2].content_range(10), "bytes 8-9/10");
        assert_eq!(chunks(8, 4).len(), 2);
        let empty = chunks(0, 4);
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].content_range(0), "bytes */0");
    }

    #[test]
    fn multipart_layout() {
        let batch = Batch {
            id: "b-1".into(),
            delivery: "d".into(),
            record_count: 1,
            cut_at: String::new(),
            zone: "UTC".into(),
            files: vec![],
            already_delivered: vec![],
        };
        let file = FileInfo {
            part: 0,
            kind: "data".into(),
            name: "a\"b.csv".into(),
            size: 3,
            sha256: "ab".into(),
            records: 1,
        };
        let body = String::from_utf8(multipart_body("X", &batch, &file, b"1,2")).unwrap();
        assert!(body.starts_with(
            "--X\r\nContent-Disposition: form-data; name=\"batch_id\"\r\n\r\nb-1\r\n"
        ));
        assert!(body.contains("filename=\"a_b.csv\""));
        assert!(body.ends_with("\r\n\r\n1,2\r\n--X--\r\n"));
    }
}
