//! The plugin's configuration, read and checked once per call.

use std::time::Duration;

use consign_plugin::{config, Error, Result};

/// How files are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// PUT byte chunks to `{endpoint}/{batch_id}/{name}`.
    Chunks,
    /// One multipart/form-data POST per file to `{endpoint}`.
    Multipart,
}

/// Who reads the bytes of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The host streams the range (the bytes never enter the plugin).
    Host,
    /// The plugin reads them through the batch-file reader.
    Guest,
}

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// No credentials.
    None,
    /// `Authorization: Bearer {token}`.
    Bearer,
    /// `X-Signature-256: sha256=<hex HMAC-SHA256(hmac_secret, body)>`.
    Hmac,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::None => "none",
            AuthKind::Bearer => "bearer",
            AuthKind::Hmac => "hmac",
        }
    }
}

/// Default chunk size: 8 MiB.
pub const DEFAULT_CHUNK_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL, without a trailing `/` on its path; a query string
    /// (`?a=b`) is kept. Build request URLs with [`Settings::url`].
    pub endpoint: String,
    pub mode: Mode,
    pub chunk_bytes: u64,
    pub stream: Stream,
    pub auth: AuthKind,
    pub timeout: Option<Duration>,
}

impl Settings {
    pub fn load() -> Result<Settings> {
        let endpoint = config::require("endpoint")?;
        let mode = config::get_or("mode", "chunks");
        let stream = config::get_or("stream", "host");
        let auth = config::get_or("auth", "none");
        let chunk_bytes = config::parse::<u64>("chunk_bytes")?;
        let timeout = config::parse::<u32>("timeout_seconds")?;
        Settings::parse(&endpoint, &mode, &stream, &auth, chunk_bytes, timeout)
    }

    /// `{endpoint}/{path}`, the path inserted before the endpoint's query
    /// string (`http://h/up?a=b` + `b1/f.csv` -> `http://h/up/b1/f.csv?a=b`).
    pub fn url(&self, path: &str) -> String {
        let (base, query) = split_query(&self.endpoint);
        format!("{base}/{path}{query}")
    }

    fn parse(
        endpoint: &str,
        mode: &str,
        stream: &str,
        auth: &str,
        chunk_bytes: Option<u64>,
        timeout_seconds: Option<u32>,
    ) -> Result<Settings> {
        let endpoint = endpoint.trim();
        let (path, query) = split_query(endpoint);
        let endpoint = format!("{}{query}", path.trim_end_matches('/'));
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(Error::permanent(format!(
                "config `endpoint` = {endpoint:?} must be an http:// or https:// URL"
            )));
        }
        let mode = match mode {
            "chunks" => Mode::Chunks,
            "multipart" => Mode::Multipart,
            other => {
                return Err(Error::permanent(format!(
                    "config `mode` = {other:?}: use \"chunks\" or \"multipart\""
                )))
            }
        };
        let stream = match stream {
            "host" => Stream::Host,
            "guest" => Stream::Guest,
            other => {
                return Err(Error::permanent(format!(
                    "config `stream` = {other:?}: use \"host\" or \"guest\""
                )))
            }
        };
        let auth = match auth {
            "none" => AuthKind::None,
            "bearer" => AuthKind::Bearer,
            "hmac" => AuthKind::Hmac,
            other => {
                return Err(Error::permanent(format!(
                    "config `auth` = {other:?}: use \"none\", \"bearer\" or \"hmac\""
                )))
            }
        };
        let chunk_bytes = chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES);
        if chunk_bytes == 0 {
            return Err(Error::permanent("config `chunk_bytes` must be at least 1"));
        }
        let timeout = match timeout_seconds {
            Some(0) => {
                return Err(Error::permanent(
                    "config `timeout_seconds` must be at least 1",
                ))
            }
            Some(s) => Some(Duration::from_secs(u64::from(s))),
            None => None,
        };
        Ok(Settings {
            endpoint,
            mode,
            chunk_bytes,
            stream,
            auth,
            timeout,
        })
    }
}

/// A URL split before its query string or fragment (`?` or `#`, whichever
/// comes first): `("http://h/up", "?a=b")`.
fn split_query(url: &str) -> (&str, &str) {
    url.split_at(url.find(['?', '#']).unwrap_or(url.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let s = Settings::parse("http://h:1/up/", "chunks", "host", "none", None, None).unwrap();
        assert_eq!(s.endpoint, "http://h:1/up");
        assert_eq!(s.chunk_bytes, DEFAULT_CHUNK_BYTES);
        assert!(Settings::parse("ftp://h", "chunks", "host", "none", None, None).is_err());
        assert!(Settings::parse("http://h", "zip", "host", "none", None, None).is_err());
        assert!(Settings::parse("http://h", "chunks", "host", "basic", None, None).is_err());
        assert!(Settings::parse("http://h", "chunks", "host", "none", Some(0), None).is_err());
    }

    #[test]
    fn path_goes_before_the_query() {
        let url = |endpoint: &str| {
            Settings::parse(endpoint, "chunks", "host", "none", None, None)
                .unwrap()
                .url("b-1/a.csv")
        };
        assert_eq!(url("http://h:1/up"), "http://h:1/up/b-1/a.csv");
        assert_eq!(url("http://h:1/up/"), "http://h:1/up/b-1/a.csv");
        assert_eq!(url("http://h:1/up?a=b"), "http://h:1/up/b-1/a.csv?a=b");
        assert_eq!(
            url("https://h/up/?a=b&c=d/e"),
            "https://h/up/b-1/a.csv?a=b&c=d/e"
        );
        assert_eq!(url("http://h/up#frag"), "http://h/up/b-1/a.csv#frag");
        let s = Settings::parse("http://h/up/?a=b", "multipart", "host", "none", None, None);
        assert_eq!(s.unwrap().endpoint, "http://h/up?a=b");
    }
}
