//! Outbound HTTP through the host (capability `http`).
//!
//! The host sends the request (TLS verified, redirects not followed) only to
//! the `host:port` pairs the manifest asks for *and* the operator allows;
//! anything else fails with [`HttpError::Denied`] carrying the host's reason.
//!
//! ```ignore
//! use consign_plugin::http::Request;
//!
//! let reply = Request::put(format!("{endpoint}/{}", file.name))
//!     .header("X-Batch-Id", &batch.id)
//!     .file_range(file.part, 0, file.size) // streamed by the host
//!     .send()?                             // HttpError -> Error via `?`
//!     .error_for_status()?;                // 4xx/5xx -> Error
//! ```

use std::fmt;
use std::time::Duration;

use crate::bindings::consign::destination::host;
use crate::Error;

/// An outbound request body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Body {
    /// No body.
    #[default]
    Empty,
    /// These bytes.
    Bytes(Vec<u8>),
    /// A byte range of a batch file, streamed by the host without passing
    /// through the plugin's memory. The range is clipped at the end of the
    /// file.
    File {
        /// The file's part.
        part: u32,
        /// First byte.
        offset: u64,
        /// Bytes to send.
        len: u64,
    },
}

/// A request to send with [`Request::send`] (a builder: every setter takes
/// and returns `self`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Body,
    timeout_ms: Option<u32>,
}

impl Request {
    /// A request with any method (`GET`, `PUT`, ...) to an `http://` or
    /// `https://` URL.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Body::Empty,
            timeout_ms: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `HEAD` request.
    pub fn head(url: impl Into<String>) -> Self {
        Self::new("HEAD", url)
    }

    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new("PUT", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new("DELETE", url)
    }

    /// Add a header (several with the same name are all sent).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// Send these bytes as the body.
    pub fn bytes(self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body(Body::Bytes(bytes.into()))
    }

    /// Send `len` bytes of batch file `part` from `offset` as the body,
    /// streamed by the host.
    pub fn file_range(self, part: u32, offset: u64, len: u64) -> Self {
        self.body(Body::File { part, offset, len })
    }

    /// Per-request timeout (the host's default, 60 s, when not set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
        self
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers, in the order they were added.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn body_ref(&self) -> &Body {
        &self.body
    }

    /// Send it (see [`send`]).
    pub fn send(self) -> Result<Response, HttpError> {
        send(self)
    }
}

/// A reply of any status: check it with [`Response::error_for_status`] or
/// look at [`Response::status`] yourself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Headers; names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (the host keeps at most 16 MiB of it).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// At most the first `max_chars` characters of the body, trimmed: for
    /// error messages.
    pub fn snippet(&self, max_chars: usize) -> String {
        self.text().trim().chars().take(max_chars).collect()
    }

    /// `Retry-After` in seconds, when the server sent it as a number.
    pub fn retry_after(&self) -> Option<u32> {
        self.header("retry-after")?.trim().parse().ok()
    }

    /// The usual classification of a reply:
    ///
    /// | status | result |
    /// |---|---|
    /// | 2xx | `Ok(self)` |
    /// | 401, 403 | [`Error::Auth`] |
    /// | 408, 429, 5xx | [`Error::Retryable`], honouring `Retry-After` seconds |
    /// | 3xx | [`Error::Permanent`] (redirects are not followed) |
    /// | other | [`Error::Rejected`] with the status as code and the first 200 characters of the body |
    pub fn error_for_status(self) -> Result<Response, Error> {
        let status = self.status;
        let what = |r: &Response| {
            let s = r.snippet(200);
            if s.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {s}")
            }
        };
        match status {
            200..=299 => Ok(self),
            401 | 403 => Err(Error::auth(what(&self))),
            408 | 429 | 500..=599 => {
                let e = Error::retryable(what(&self));
                Err(match self.retry_after() {
                    Some(s) => e.after(s),
                    None => e,
                })
            }
            300..=399 => Err(Error::permanent(format!(
                "HTTP {status} redirect to {} (redirects are not followed: fix the URL)",
                self.header("location").unwrap_or("?")
            ))),
            _ => Err(Error::rejected(status.to_string(), self.snippet(200))),
        }
    }
}

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL's host is not granted to this plugin (the host's reason).
    Denied(String),
    /// Could not connect (refused, unreachable, DNS).
    Connect(String),
    /// No reply in time.
    Timeout(String),
    /// The server's certificate was refused.
    Tls(String),
    /// Anything else (e.g. the connection dropped mid-request).
    Other(String),
}

impl HttpError {
    /// The host's message.
    pub fn message(&self) -> &str {
        match self {
            HttpError::Denied(m)
            | HttpError::Connect(m)
            | HttpError::Timeout(m)
            | HttpError::Tls(m)
            | HttpError::Other(m) => m,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "request denied: {m}"),
            HttpError::Connect(m) => write!(f, "could not connect: {m}"),
            HttpError::Timeout(m) => write!(f, "timed out: {m}"),
            HttpError::Tls(m) => write!(f, "TLS failed: {m}"),
            HttpError::Other(m) => write!(f, "HTTP failed: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Connect, timeout and other failures are retryable; a denied request
/// (capability) and a refused certificate are permanent: they need an
/// operator.
impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Connect(_) | HttpError::Timeout(_) | HttpError::Other(_) => {
                Error::retryable(e.to_string())
            }
            HttpError::Denied(_) => Error::permanent(e.to_string()),
            HttpError::Tls(_) => Error::permanent(format!(
                "{e} (the partner's certificate is not trusted: fix the URL or the CA)"
            )),
        }
    }
}

/// Send one request through the host.
pub fn send(request: Request) -> Result<Response, HttpError> {
    let body = match request.body {
        Body::Empty => host::Body::Empty,
        Body::Bytes(b) => host::Body::Bytes(b),
        Body::File { part, offset, len } => host::Body::File(host::FileRange { part, offset, len }),
    };
    let req = host::HttpRequest {
        method: request.method,
        url: request.url,
        headers: request.headers,
        body,
        timeout_ms: request.timeout_ms,
    };
    match host::http_send(&req) {
        Ok(r) => Ok(Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }),
        Err(e) => Err(match e {
            host::HttpError::Denied(m) => HttpError::Denied(m),
            host::HttpError::Connect(m) => HttpError::Connect(m),
            host::HttpError::Timeout(m) => HttpError::Timeout(m),
            host::HttpError::Tls(m) => HttpError::Tls(m),
            host::HttpError::Other(m) => HttpError::Other(m),
        }),
    }
}

/// Percent-encode `s` for one URL path segment (or a query value): every
/// byte except `A-Z a-z 0-9 - . _ ~` becomes `%XX`.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn classifies_statuses() {
        assert!(reply(204, &[], "").error_for_status().is_ok());
        assert_eq!(
            reply(401, &[], "no").error_for_status().unwrap_err(),
            Error::auth("HTTP 401: no")
        );
        assert_eq!(
            reply(429, &[("retry-after", "12")], "")
                .error_for_status()
                .unwrap_err(),
            Error::retryable("HTTP 429").after(12)
        );
        assert_eq!(
            reply(503, &[], "").error_for_status().unwrap_err().class(),
            "retryable"
        );
        let long = "x".repeat(500);
        match reply(422, &[], &long).error_for_status().unwrap_err() {
            Error::Rejected { code, message } => {
                assert_eq!(code, "422");
                assert_eq!(message.len(), 200);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            reply(302, &[("location", "/x")], "")
                .error_for_status()
                .unwrap_err()
                .class(),
            "permanent"
        );
    }

    #[test]
    fn http_errors_classify() {
        assert_eq!(
            Error::from(HttpError::Timeout("t".into())).class(),
            "retryable"
        );
        let denied = Error::from(HttpError::Denied("host x not granted".into()));
        assert_eq!(denied.class(), "permanent");
        assert!(denied.message().contains("host x not granted"));
    }

    #[test]
    fn builder_and_encoding() {
        let r = Request::put("http://h/x")
            .header("A", "b")
            .file_range(2, 0, 10)
            .timeout(Duration::from_secs(5));
        assert_eq!(r.method(), "PUT");
        assert_eq!(r.headers().len(), 1);
        assert_eq!(
            r.body_ref(),
            &Body::File {
                part: 2,
                offset: 0,
                len: 10
            }
        );
        assert_eq!(encode_component("a b/c~.csv"), "a%20b%2Fc~.csv");
        assert_eq!(encode_component("é"), "%C3%A9");
    }
}
