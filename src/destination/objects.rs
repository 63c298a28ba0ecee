//! What the object-store destinations share: keys from the prefix pattern,
//! metadata templates, content types, uploads through `object_store`
//! (one PUT, or multipart from `multipart_threshold` up), the integrity
//! check after each upload, and error classes.
//!
//! `object_store` retries nothing here (`max_retries = 0`): the delivery
//! worker's retry policy is the only retry loop.

use super::*;
use crate::assemble::naming::NameContext;
use crate::config::ObjectOptions;
use md5::{Digest, Md5};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, AttributeValue, Attributes, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, RetryConfig,
};
use std::io::Read;
use std::sync::Arc;

/// Transfer settings of one object-store destination.
pub struct Transfer {
    pub multipart_threshold: u64,
    pub part_size: u64,
    /// S3 storage class / Azure access tier.
    pub storage_class: Option<String>,
    /// Whether a single PUT's ETag is the MD5 of the object (not with
    /// SSE-KMS, not on Azure).
    pub etag_is_md5: bool,
}

/// No retries inside object_store: our delivery worker owns retrying.
pub fn no_retries() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    }
}

/// The object key of a file: `prefix/name`, the prefix rendered from the
/// batch's cut time so every attempt uses the same key.
pub fn key(opts: &ObjectOptions<'_>, s: &Shipment, f: &OutgoingFile) -> String {
    match opts.prefix {
        Some(p) => {
            let parts = s.files.iter().filter(|f| f.kind == "data").count() as u32;
            let prefix = p.render(&NameContext {
                delivery: &s.delivery,
                batch_id: &s.batch_id,
                at: s.cut_at,
                zone: s.zone,
                part: f.part,
                parts,
                record_count: s.record_count,
            });
            format!("{}/{}", prefix.trim_end_matches('/'), f.name)
        }
        None => f.name.clone(),
    }
}

/// Metadata values with their placeholders filled in.
pub fn metadata(opts: &ObjectOptions<'_>, s: &Shipment, f: &OutgoingFile) -> Vec<(String, String)> {
    let parts = s.files.iter().filter(|f| f.kind == "data").count();
    opts.metadata
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace("{batch_id}", &s.batch_id)
                .replace("{delivery}", &s.delivery)
                .replace("{batch_record_count}", &s.record_count.to_string())
                .replace("{record_count}", &f.records.to_string())
                .replace("{name}", &f.name)
                .replace("{parts}", &parts.to_string())
                .replace("{part}", &f.part.to_string())
                .replace("{sha256}", &f.sha256);
            (k.clone(), v)
        })
        .collect()
}

/// S3 and Azure carry metadata in HTTP headers, which are ASCII: other
/// bytes (and `%`) are percent-encoded as UTF-8 (`café` → `caf%C3%A9`).
pub fn header_safe(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Content type of an uploaded file: the configured one, else from its name.
/// A `.gz` file is `application/gzip`; `Content-Encoding` is never set, so
/// clients download the gzip file as it is.
pub fn content_type(opts: &ObjectOptions<'_>, name: &str) -> String {
    opts.content_type
        .map(str::to_string)
        .unwrap_or_else(|| super::http::content_type(name).to_string())
}

fn parse_path(key: &str) -> Result<ObjectPath, DestinationError> {
    ObjectPath::parse(key).map_err(|e| {
        DestinationError::new(
            ErrorClass::Permanent,
            format!("{key:?} is not a valid object key: {e}"),
        )
    })
}

/// Upload one file and check what the store holds afterwards: its size,
/// and the ETag where it is a checksum (MD5 for one PUT, MD5 of the part
/// MD5s plus `-N` for multipart).
pub async fn upload(
    store: &Arc<dyn ObjectStore>,
    transfer: &Transfer,
    opts: &ObjectOptions<'_>,
    s: &Shipment<'_>,
    f: &OutgoingFile,
) -> Result<String, DestinationError> {
    let key = key(opts, s, f);
    let path = parse_path(&key)?;
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::ContentType,
        AttributeValue::from(content_type(opts, &f.name)),
    );
    if let Some(class) = &transfer.storage_class {
        attributes.insert(Attribute::StorageClass, AttributeValue::from(class.clone()));
    }
    for (k, v) in metadata(opts, s, f) {
        attributes.insert(
            Attribute::Metadata(k.into()),
            AttributeValue::from(header_safe(&v)),
        );
    }
    let mut spool = open_spool(f)?;
    let read_err = |e: std::io::Error| {
        DestinationError::new(io_class(&e), format!("reading {}: {e}", f.path.display()))
    };
    let expected_etag;
    if f.bytes < transfer.multipart_threshold {
        let mut buf = Vec::with_capacity(f.bytes as usize);
        spool.read_to_end(&mut buf).map_err(read_err)?;
        expected_etag = hex::encode(Md5::digest(&buf));
        let put = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        let r = store
            .put_opts(&path, PutPayload::from(buf), put)
            .await
            .map_err(|e| classify(&e, &format!("PUT {key}")))?;
        check_etag(transfer, &key, r.e_tag.as_deref(), &expected_etag)?;
    } else {
        let put = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let mut up = store
            .put_multipart_opts(&path, put)
            .await
            .map_err(|e| classify(&e, &format!("starting multipart upload of {key}")))?;
        let mut part_md5s = Vec::new();
        let mut parts = 0usize;
        let result: Result<Option<String>, DestinationError> = async {
            loop {
                let mut buf = Vec::with_capacity(transfer.part_size as usize);
                (&mut spool)
                    .take(transfer.part_size)
                    .read_to_end(&mut buf)
                    .map_err(read_err)?;
                if buf.is_empty() {
                    break;
                }
                part_md5s.extend_from_slice(&Md5::digest(&buf));
                parts += 1;
                up.put_part(PutPayload::from(buf))
                    .await
                    .map_err(|e| classify(&e, &format!("part {parts} of {key}")))?;
            }
            let r = up
                .complete()
                .await
                .map_err(|e| classify(&e, &format!("completing {key}")))?;
            Ok(r.e_tag)
        }
        .await;
        match result {
            Ok(etag) => {
                expected_etag = format!("{}-{parts}", hex::encode(Md5::digest(&part_md5s)));
                check_etag(transfer, &key, etag.as_deref(), &expected_etag)?;
            }
            Err(e) => {
                let _ = up.abort().await;
                return Err(e);
            }
        }
    }
    let meta = store
        .head(&path)
        .await
        .map_err(|e| classify(&e, &format!("HEAD {key}")))?;
    if meta.size != f.bytes {
        return Err(DestinationError::new(
            ErrorClass::Transient,
            format!("{key} holds {} bytes, expected {}", meta.size, f.bytes),
        ));
    }
    Ok(key)
}

fn check_etag(
    transfer: &Transfer,
    key: &str,
    got: Option<&str>,
    expected: &str,
) -> Result<(), DestinationError> {
    if !transfer.etag_is_md5 {
        return Ok(());
    }
    match got.map(|e| e.trim_matches('"')) {
        Some(e) if e.eq_ignore_ascii_case(expected) => Ok(()),
        Some(e) => Err(DestinationError::new(
            ErrorClass::Transient,
            format!("{key}: the store's checksum (ETag {e}) does not match ours ({expected}): the upload was damaged"),
        )),
        None => Ok(()),
    }
}

/// ` at ENDPOINT` for descriptions of stores with a custom endpoint.
pub fn at(endpoint: Option<&crate::config::Expanded>) -> String {
    endpoint.map(|e| format!(" at {}", e.0)).unwrap_or_default()
}

/// Deliver every file of a shipment to an object store.
pub fn deliver_all(
    store: &Arc<dyn ObjectStore>,
    transfer: &Transfer,
    opts: &ObjectOptions<'_>,
    shipment: &Shipment<'_>,
    describe: &str,
) -> Result<Receipt, DestinationError> {
    let placed = block_on(async {
        let mut placed = Vec::new();
        for f in &shipment.files {
            let key = upload(store, transfer, opts, shipment, f).await?;
            placed.push(format!("{key} ({} bytes)", f.bytes));
        }
        Ok::<_, DestinationError>(placed)
    })??;
    Ok(Receipt {
        reply: None,
        delivered: Vec::new(),
        detail: format!("{describe}: {}", placed.join(", ")),
    })
}

/// A probe key for `check --connect`: under the prefix (rendered now, in
/// UTC) where deliveries write, unique to this check.
pub fn probe_key(opts: &ObjectOptions<'_>) -> String {
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let name = format!(".consign-check-{}-{nanos}", std::process::id());
    match opts.prefix {
        Some(p) => {
            let prefix = p.render(&NameContext {
                delivery: "check",
                batch_id: "check",
                at: chrono::Utc::now(),
                zone: chrono_tz::UTC,
                part: 1,
                parts: 1,
                record_count: 0,
            });
            format!("{}/{name}", prefix.trim_end_matches('/'))
        }
        None => name,
    }
}

/// `check --connect` for an object store: write, read back, delete a
/// probe under the prefix.
pub fn check(
    store: &Arc<dyn ObjectStore>,
    opts: &ObjectOptions<'_>,
    describe: &str,
) -> Result<String, DestinationError> {
    let key = probe_key(opts);
    block_on(probe(store, &key))??;
    Ok(format!(
        "{describe}: connected, credentials accepted, {key} written, read back and deleted"
    ))
}

/// Write, read back and delete a small probe object.
pub async fn probe(store: &Arc<dyn ObjectStore>, key: &str) -> Result<(), DestinationError> {
    let path = parse_path(key)?;
    store
        .put(&path, PutPayload::from_static(b"consign check"))
        .await
        .map_err(|e| classify(&e, &format!("cannot write {key}")))?;
    let back = store
        .get(&path)
        .await
        .map_err(|e| classify(&e, &format!("cannot read back {key}")))?
        .bytes()
        .await
        .map_err(|e| classify(&e, &format!("cannot read back {key}")))?;
    let _ = store.delete(&path).await;
    if back.as_ref() != b"consign check" {
        return Err(DestinationError::new(
            ErrorClass::Permanent,
            format!("{key} read back differs from what was written"),
        ));
    }
    Ok(())
}

/// Drop the query of any URL in a message (an Azure SAS token travels there).
fn without_queries(message: &str) -> String {
    message
        .split(' ')
        .map(|w| match (w.contains("://"), w.find('?')) {
            (true, Some(i)) => &w[..i],
            _ => w,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The HTTP status inside an object_store error message, if any.
fn status_in(message: &str) -> Option<u16> {
    let i = message.find("status code: ")?;
    message[i + 13..].get(..3)?.parse().ok()
}

/// Classify an object_store error.
pub fn classify(e: &object_store::Error, what: &str) -> DestinationError {
    use object_store::Error as E;
    let mut chain = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !chain.contains(&t) {
            chain.push_str(": ");
            chain.push_str(&t);
        }
        src = s.source();
    }
    // One line, bounded: stores answer with multi-line XML documents.
    let mut chain = without_queries(&chain)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if chain.len() > 500 {
        let mut cut = 500;
        while !chain.is_char_boundary(cut) {
            cut -= 1;
        }
        chain.truncate(cut);
        chain.push('…');
    }
    let lower = chain.to_ascii_lowercase();
    // Without configured keys the clients fall back to the cloud's instance
    // metadata service; off the cloud that fails with an unhelpful 403.
    if lower.contains("169.254.169.254") || lower.contains("metadata/identity/oauth2") {
        return DestinationError::new(
            ErrorClass::Auth,
            format!("{what}: no usable credentials: configure keys for this destination or provide them through the environment ({chain})"),
        );
    }
    if lower.contains("redirect without location") {
        return DestinationError::new(
            ErrorClass::Permanent,
            format!("{what}: the store redirected without saying where: is `region` the bucket's region? ({chain})"),
        );
    }
    let auth_words = [
        "signaturedoesnotmatch",
        "invalidaccesskeyid",
        "expiredtoken",
        "authenticationfailed",
        "authorizationfailure",
        "invalidtoken",
    ];
    let class = match e {
        E::Unauthenticated { .. } => ErrorClass::Auth,
        E::PermissionDenied { .. } if auth_words.iter().any(|w| lower.contains(w)) => {
            ErrorClass::Auth
        }
        E::PermissionDenied { .. } => ErrorClass::Permission,
        E::NotFound { .. } => ErrorClass::NotFound,
        E::InvalidPath { .. } | E::NotSupported { .. } | E::NotImplemented { .. } => {
            ErrorClass::Permanent
        }
        _ if auth_words.iter().any(|w| lower.contains(w)) => ErrorClass::Auth,
        _ if tls::is_certificate_error(&lower) => ErrorClass::HostKey,
        _ => match status_in(&lower) {
            Some(401) => ErrorClass::Auth,
            Some(403) => ErrorClass::Permission,
            Some(404) => ErrorClass::NotFound,
            Some(408 | 429) => ErrorClass::Transient,
            Some(s) if s >= 500 => ErrorClass::Transient,
            Some(_) => ErrorClass::Permanent,
            None if lower.contains("timed out") || lower.contains("timeout") => ErrorClass::Timeout,
            None if lower.contains("connect") || lower.contains("dns") => ErrorClass::Connect,
            None => ErrorClass::Transient,
        },
    };
    match plain(&chain) {
        Some(p) => DestinationError::new(class, format!("{what}: {p} (store said: {chain})")),
        None => DestinationError::new(class, format!("{what}: {chain}")),
    }
}

/// The store's error code (`<Code>…</Code>` of S3 and Azure replies) in
/// plain words, for the codes an operator meets most.
fn plain(chain: &str) -> Option<String> {
    let start = chain.find("<Code>")? + "<Code>".len();
    let len = chain[start..].find("</Code>")?;
    let code = &chain[start..start + len];
    let words = match code {
        "NoSuchBucket" => "the bucket does not exist: create it or fix `bucket`",
        "ContainerNotFound" => "the container does not exist: create it or fix `container`",
        "SignatureDoesNotMatch" | "AuthenticationFailed" => {
            "the store refused the credentials (wrong secret key or account key)"
        }
        "InvalidAccessKeyId" => "the store does not know this access key id",
        "ExpiredToken" | "InvalidToken" => "the credentials' session token is expired or invalid",
        "AccessDenied" | "AuthorizationPermissionMismatch" | "AuthorizationFailure" => {
            "access denied: the credentials may not write here"
        }
        "SlowDown" | "ServerBusy" => "the store asks to slow down",
        _ => return None,
    };
    Some(format!("{words} [{code}]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_codes_in_plain_words() {
        let p = plain("Object at location x not found: <?xml?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>");
        assert_eq!(
            p.as_deref(),
            Some("the bucket does not exist: create it or fix `bucket` [NoSuchBucket]")
        );
        assert!(plain("<Code>Weird</Code>").is_none());
        assert!(plain("no xml here").is_none());
    }

    #[test]
    fn queries_are_dropped_from_messages() {
        assert_eq!(
            without_queries("GET http://h/c/b?sv=1&sig=SECRET failed"),
            "GET http://h/c/b failed"
        );
    }

    #[test]
    fn metadata_values_are_made_header_safe() {
        assert_eq!(header_safe("café 100%"), "caf%C3%A9 100%25");
        assert_eq!(header_safe("plain-ascii_1"), "plain-ascii_1");
    }

    #[test]
    fn status_is_found() {
        assert_eq!(
            status_in("server returned non-2xx status code: 503 service unavailable: x"),
            Some(503)
        );
        assert_eq!(status_in("no status"), None);
    }
}
