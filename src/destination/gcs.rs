//! `gcs`: Google Cloud Storage through its JSON API (resumable uploads),
//! which both Google and the fake-gcs-server emulator implement (the XML
//! API that object_store's GCS backend uses does not work on the emulator).
//!
//! Credentials come from gcp_auth: a service-account JSON key, or the
//! default chain (GOOGLE_APPLICATION_CREDENTIALS, the metadata server /
//! workload identity, gcloud). `auth = "none"` is for emulators.
//!
//! Unless `overwrite` is set, an existing object is never replaced: it is
//! looked up first, and the upload carries `ifGenerationMatch=0` against a
//! race. An existing object with the same MD5 counts as delivered (a reply
//! lost on the way back); a different one is refused (manual queue).

use super::http::{encode, retry_after, send_error, snippet};
use super::objects;
use super::*;
use crate::config::{GcsAuth, GcsConfig};
use base64::Engine;
use md5::{Digest, Md5};
use reqwest::blocking::{Client, Response};
use std::io::Read;
use std::time::Duration;

const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

pub struct GcsDestination {
    cfg: GcsConfig,
}

/// Classify a non-success reply of the JSON API.
/// `creates`: the request creates an object, so a 404 can only mean the
/// bucket is missing.
fn status_error(what: &str, resp: Response, creates: bool) -> DestinationError {
    let status = resp.status().as_u16();
    let wait = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(retry_after);
    let reason = resp.status().canonical_reason().unwrap_or("").to_string();
    let body = resp.bytes().map(|b| snippet(&b)).unwrap_or_default();
    let class = match status {
        401 => ErrorClass::Auth,
        403 => ErrorClass::Permission,
        404 => ErrorClass::NotFound,
        408 | 429 => ErrorClass::Transient,
        s if s >= 500 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    };
    let plain = if status == 404 && (creates || body.to_ascii_lowercase().contains("bucket")) {
        "the bucket does not exist: create it or fix `bucket`; "
    } else {
        ""
    };
    let mut e = DestinationError::new(
        class,
        format!("{what}: {plain}HTTP {status} {reason}: {body}"),
    );
    e.retry_after = wait;
    e.reply = Some(Box::new(Reply {
        code: Some(u32::from(status)),
        message: reason,
        headers: Vec::new(),
        body: Some(body),
    }));
    e
}

/// What the API says about an object.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectResource {
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    md5_hash: Option<String>,
}

impl GcsDestination {
    pub fn new(cfg: GcsConfig) -> Self {
        GcsDestination { cfg }
    }

    fn endpoint(&self) -> String {
        self.cfg
            .endpoint
            .as_ref()
            .map_or(DEFAULT_ENDPOINT, |e| e.0.as_str())
            .trim_end_matches('/')
            .to_string()
    }

    fn client(&self) -> Result<Client, DestinationError> {
        Client::builder()
            .timeout(self.cfg.timeout.0)
            .connect_timeout(self.cfg.timeout.0.min(Duration::from_secs(30)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("consign/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DestinationError::new(ErrorClass::Permanent, format!("HTTP client: {e}")))
    }

    /// An OAuth access token, or none for `auth = "none"`.
    fn token(&self) -> Result<Option<String>, DestinationError> {
        let auth_err = |e: gcp_auth::Error| {
            let text = e.to_string();
            // The token server could not be reached or its answer was cut
            // off: that passes, retry. A refusal (any non-2xx answer; the
            // library does not say which) or bad key material suspends.
            let class = if text.contains("HTTP request failed")
                || text.contains("failed to read HTTP response body")
            {
                ErrorClass::Transient
            } else {
                ErrorClass::Auth
            };
            let hint = if text.contains("token request failed") {
                " (the token server refused the credentials or failed; its status is in the log at WARN)"
            } else {
                ""
            };
            DestinationError::new(class, format!("Google credentials: {text}{hint}"))
        };
        let provider: std::sync::Arc<dyn gcp_auth::TokenProvider> = match self.cfg.auth {
            GcsAuth::None => return Ok(None),
            GcsAuth::ServiceAccount => {
                let path = self.cfg.credentials_file.as_ref().ok_or_else(|| {
                    DestinationError::new(ErrorClass::Permanent, "no credentials_file")
                })?;
                std::sync::Arc::new(
                    gcp_auth::CustomServiceAccount::from_file(path).map_err(auth_err)?,
                )
            }
            GcsAuth::Default => block_on(gcp_auth::provider())?.map_err(auth_err)?,
        };
        let token = block_on(async { provider.token(&[SCOPE]).await })?.map_err(auth_err)?;
        Ok(Some(token.as_str().to_string()))
    }

    fn authed(
        &self,
        rb: reqwest::blocking::RequestBuilder,
        token: &Option<String>,
    ) -> reqwest::blocking::RequestBuilder {
        match token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    fn object_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.endpoint(),
            encode(&self.cfg.bucket.0),
            encode(key)
        )
    }

    /// The MD5 (base64, as the API reports it) of a spool file.
    fn md5_of(f: &OutgoingFile) -> Result<String, DestinationError> {
        let mut r = open_spool(f)?;
        let mut h = Md5::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf).map_err(|e| {
                DestinationError::new(io_class(&e), format!("reading {}: {e}", f.path.display()))
            })?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(base64::engine::general_purpose::STANDARD.encode(h.finalize()))
    }

    fn existing(
        &self,
        client: &Client,
        token: &Option<String>,
        key: &str,
    ) -> Result<Option<ObjectResource>, DestinationError> {
        let resp = self
            .authed(client.get(self.object_url(key)), token)
            .send()
            .map_err(|e| send_error(&format!("GET {key}"), e))?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(status_error(&format!("GET {key}"), resp, false));
        }
        resp.json::<ObjectResource>()
            .map(Some)
            .map_err(|e| DestinationError::new(ErrorClass::Transient, format!("GET {key}: {e}")))
    }

    fn upload(
        &self,
        client: &Client,
        token: &Option<String>,
        s: &Shipment,
        f: &OutgoingFile,
    ) -> Result<String, DestinationError> {
        let opts = self.cfg.object();
        let key = objects::key(&opts, s, f);
        let md5 = Self::md5_of(f)?;
        if !self.cfg.overwrite && self.existing(client, token, &key)?.is_some() {
            // Look first (not only `ifGenerationMatch=0`, which emulators ignore).
            return self.already_there(client, token, &key, &md5);
        }
        let mut meta = serde_json::json!({
            "name": key,
            "contentType": objects::content_type(&opts, &f.name),
        });
        let user: serde_json::Map<String, serde_json::Value> = objects::metadata(&opts, s, f)
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        if !user.is_empty() {
            meta["metadata"] = serde_json::Value::Object(user);
        }
        if let Some(class) = &self.cfg.storage_class {
            meta["storageClass"] = serde_json::Value::String(class.clone());
        }
        let mut url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable",
            self.endpoint(),
            encode(&self.cfg.bucket.0)
        );
        if !self.cfg.overwrite {
            url.push_str("&ifGenerationMatch=0");
        }
        let start = self
            .authed(client.post(&url), token)
            .header(
                "X-Upload-Content-Type",
                objects::content_type(&opts, &f.name),
            )
            .header("X-Upload-Content-Length", f.bytes)
            .json(&meta)
            .send()
            .map_err(|e| send_error(&format!("starting upload of {key}"), e))?;
        if start.status().as_u16() == 412 {
            return self.already_there(client, token, &key, &md5);
        }
        if !start.status().is_success() {
            return Err(status_error(
                &format!("starting upload of {key}"),
                start,
                true,
            ));
        }
        let session = start
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                DestinationError::new(
                    ErrorClass::Transient,
                    format!("starting upload of {key}: no upload session in the reply"),
                )
            })?;
        let mut spool = open_spool(f)?;
        let chunk = self.cfg.chunk_size.0;
        let mut offset = 0u64;
        let done = loop {
            let mut buf = Vec::with_capacity(chunk.min(f.bytes.max(1)) as usize);
            (&mut spool)
                .take(chunk)
                .read_to_end(&mut buf)
                .map_err(|e| {
                    DestinationError::new(
                        io_class(&e),
                        format!("reading {}: {e}", f.path.display()),
                    )
                })?;
            let range = if buf.is_empty() {
                format!("bytes */{}", f.bytes)
            } else {
                format!(
                    "bytes {offset}-{}/{}",
                    offset + buf.len() as u64 - 1,
                    f.bytes
                )
            };
            let n = buf.len() as u64;
            let resp = self
                .authed(client.put(&session), token)
                .header(reqwest::header::CONTENT_RANGE, range)
                .body(buf)
                .send()
                .map_err(|e| send_error(&format!("uploading {key} at byte {offset}"), e))?;
            offset += n;
            match resp.status().as_u16() {
                200 | 201 => break resp,
                308 if offset < f.bytes => continue,
                412 => return self.already_there(client, token, &key, &md5),
                _ => return Err(status_error(&format!("uploading {key}"), resp, false)),
            }
        };
        let obj: ObjectResource = done.json().map_err(|e| {
            DestinationError::new(
                ErrorClass::Transient,
                format!("{key}: unreadable reply: {e}"),
            )
        })?;
        self.verify(&key, f, &md5, &obj)?;
        Ok(key)
    }

    fn verify(
        &self,
        key: &str,
        f: &OutgoingFile,
        md5: &str,
        obj: &ObjectResource,
    ) -> Result<(), DestinationError> {
        let size = obj.size.as_deref().and_then(|s| s.parse::<u64>().ok());
        if size != Some(f.bytes) {
            return Err(DestinationError::new(
                ErrorClass::Transient,
                format!("{key} holds {size:?} bytes, expected {}", f.bytes),
            ));
        }
        if let Some(got) = &obj.md5_hash {
            if got != md5 {
                return Err(DestinationError::new(
                    ErrorClass::Transient,
                    format!("{key}: stored MD5 {got} differs from ours ({md5}): damaged upload"),
                ));
            }
        }
        Ok(())
    }

    /// `ifGenerationMatch=0` failed: the object exists.
    fn already_there(
        &self,
        client: &Client,
        token: &Option<String>,
        key: &str,
        md5: &str,
    ) -> Result<String, DestinationError> {
        match self.existing(client, token, key)? {
            Some(obj) if obj.md5_hash.as_deref() == Some(md5) => Ok(key.to_string()),
            _ => Err(DestinationError::new(
                ErrorClass::Permanent,
                format!("{key} already exists with other content; not replaced (set overwrite = true to replace)"),
            )),
        }
    }
}

impl Destination for GcsDestination {
    fn describe(&self) -> String {
        let at = objects::at(self.cfg.endpoint.as_ref());
        format!("gs://{}{at}", self.cfg.bucket.0)
    }

    fn deliver(&self, shipment: &Shipment) -> Result<Receipt, DestinationError> {
        let client = self.client()?;
        let token = self.token()?;
        let mut placed = Vec::new();
        for f in &shipment.files {
            let key = self.upload(&client, &token, shipment, f)?;
            placed.push(format!("{key} ({} bytes)", f.bytes));
        }
        Ok(Receipt {
            reply: None,
            delivered: Vec::new(),
            detail: format!("{}: {}", self.describe(), placed.join(", ")),
        })
    }

    fn check(&self) -> Result<String, DestinationError> {
        let client = self.client()?;
        let token = self.token()?;
        let key = objects::probe_key(&self.cfg.object());
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            self.endpoint(),
            encode(&self.cfg.bucket.0),
            encode(&key)
        );
        let resp = self
            .authed(client.post(&url), &token)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body("consign check")
            .send()
            .map_err(|e| send_error(&format!("writing {key}"), e))?;
        if !resp.status().is_success() {
            return Err(status_error(&format!("writing {key}"), resp, true));
        }
        let back = self
            .authed(
                client.get(format!("{}?alt=media", self.object_url(&key))),
                &token,
            )
            .send()
            .map_err(|e| send_error(&format!("reading back {key}"), e))?;
        if !back.status().is_success() {
            return Err(status_error(&format!("reading back {key}"), back, false));
        }
        let body = back
            .bytes()
            .map_err(|e| send_error(&format!("reading back {key}"), e))?;
        let _ = self
            .authed(client.delete(self.object_url(&key)), &token)
            .send();
        if body.as_ref() != b"consign check" {
            return Err(DestinationError::new(
                ErrorClass::Permanent,
                format!("{key} read back differs from what was written"),
            ));
        }
        let auth = match self.cfg.auth {
            GcsAuth::None => "no credentials (emulator)",
            _ => "credentials accepted",
        };
        Ok(format!(
            "{}: connected, {auth}, {key} written, read back and deleted",
            self.describe()
        ))
    }
}
