//! rest-upload: delivers a batch to a partner's REST API through the host's
//! HTTP import.
//!
//! * `mode = "chunks"` (default): each file is PUT in byte chunks to
//!   `{endpoint}/{batch_id}/{name}`, the body streamed by the host from the
//!   batch file (or read by the plugin when `stream = "guest"` or HMAC needs
//!   the bytes).
//! * `mode = "multipart"`: one `multipart/form-data` POST per file to
//!   `{endpoint}`.
//!
//! Every request carries `Idempotency-Key: {batch_id}-{part}-{chunk}`, so a
//! retried attempt resends the same keys.

mod auth;
mod reply;
mod settings;
mod upload;

use consign_plugin::http::Request;
use consign_plugin::{Batch, Destination, Error, Receipt, Result};

use crate::settings::Settings;

struct RestUpload;

impl Destination for RestUpload {
    fn deliver(batch: Batch) -> Result<Receipt> {
        let settings = Settings::load()?;
        let auth = auth::Auth::load(&settings)?;
        upload::deliver(&settings, &auth, &batch)
    }

    /// `HEAD {endpoint}` (and `GET` when HEAD is not allowed): any reply
    /// below 500 other than 401/403 means reachable.
    fn check() -> Result<String> {
        let settings = Settings::load()?;
        let auth = auth::Auth::load(&settings)?;
        let mut status = probe(&settings, &auth, "HEAD")?;
        let mut method = "HEAD";
        if status == 405 || status == 501 {
            status = probe(&settings, &auth, "GET")?;
            method = "GET";
        }
        match status {
            401 | 403 => Err(Error::auth(format!(
                "{method} {}: HTTP {status}: credentials refused",
                settings.endpoint
            ))),
            s if s >= 500 => Err(Error::retryable(format!(
                "{method} {}: HTTP {s}",
                settings.endpoint
            ))),
            s => Ok(format!(
                "{} reachable ({method} → HTTP {s}, auth {})",
                settings.endpoint,
                settings.auth.as_str()
            )),
        }
    }
}

fn probe(settings: &Settings, auth: &auth::Auth, method: &str) -> Result<u16> {
    let request = auth.sign(Request::new(method, settings.endpoint.as_str()), b"")?;
    let request = match settings.timeout {
        Some(t) => request.timeout(t),
        None => request,
    };
    request
        .send()
        .map(|r| r.status)
        .map_err(|e| Error::from(e).context(format!("{method} {}", settings.endpoint)))
}

consign_plugin::export!(RestUpload);
