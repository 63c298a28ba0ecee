//! `http`: one request per data file — with `file.split_records` and format
//! `json`/`ndjson` that is N records per request. Requests run `parallel` at
//! a time; each carries a stable idempotency key (`{batch_id}-{part}`), so a
//! retry of a chunk is recognisable; chunks delivered by an earlier attempt
//! are skipped. 429/503 `Retry-After` (seconds or HTTP date) is passed to the
//! retry policy. TLS certificates are verified unless the operator turns that
//! off for this destination.

use super::*;
use crate::config::shown_url;
use crate::config::{HttpAuth, HttpConfig};
use hmac::{Hmac, Mac};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub struct HttpDestination {
    cfg: HttpConfig,
}

/// Longest `Retry-After` honoured (a partner asking for a week is a quota,
/// which a response handler should turn into a delay).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

pub(crate) fn content_type(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    if n.ends_with(".pgp") || n.ends_with(".gpg") || n.ends_with(".asc") {
        "application/pgp-encrypted"
    } else if n.ends_with(".gz") {
        "application/gzip"
    } else if n.ends_with(".ndjson") || n.ends_with(".jsonl") {
        "application/x-ndjson"
    } else if n.ends_with(".json") {
        "application/json"
    } else if n.ends_with(".csv") {
        "text/csv"
    } else if n.ends_with(".xml") {
        "application/xml"
    } else if n.ends_with(".txt") {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

/// `Retry-After`: delta seconds or an HTTP date.
pub(crate) fn retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The value at a dotted path of a JSON reply, as text.
fn json_at(body: &[u8], path: &str) -> Option<String> {
    let root = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    let mut v = &root;
    for p in path.split('.') {
        v = match v {
            serde_json::Value::Object(m) => m.get(p)?,
            serde_json::Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl HttpDestination {
    pub fn new(cfg: HttpConfig) -> Self {
        HttpDestination { cfg }
    }

    /// A client per attempt (a blocking client must not outlive the thread pool it runs on).
    fn client(&self) -> Result<reqwest::blocking::Client, DestinationError> {
        let mut b = reqwest::blocking::Client::builder()
            .timeout(self.cfg.timeout.0)
            .connect_timeout(self.cfg.timeout.0.min(Duration::from_secs(30)))
            // A redirect would turn the POST into a GET without the data (301/302/303)
            // or need the body twice (307/308): never follow; the 3xx is reported.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("consign/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &self.cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                DestinationError::new(
                    ErrorClass::Permanent,
                    format!("cannot read ca_file {}: {e}", ca.display()),
                )
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                DestinationError::new(
                    ErrorClass::Permanent,
                    format!("ca_file {}: {e}", ca.display()),
                )
            })?;
            b = b.add_root_certificate(cert);
        }
        if self.cfg.insecure_skip_tls_verify {
            tracing::warn!(url = %shown_url(&self.cfg.url.0), "TLS certificate NOT verified (insecure_skip_tls_verify = true)");
            b = b.danger_accept_invalid_certs(true);
        }
        b.build()
            .map_err(|e| DestinationError::new(ErrorClass::Permanent, format!("HTTP client: {e}")))
    }

    fn render(&self, t: &str, s: &Shipment, f: &OutgoingFile, parts: usize, url: bool) -> String {
        // URLs: percent-encoded values; headers: non-ASCII bytes percent-encoded
        // (a header value is ASCII on the wire: raw UTF-8 arrives garbled).
        let enc = |v: &str| if url { encode(v) } else { ascii_header(v) };
        t.replace("{batch_id}", &enc(&s.batch_id))
            .replace("{delivery}", &enc(&s.delivery))
            .replace("{part}", &f.part.to_string())
            .replace("{parts}", &parts.to_string())
            .replace("{record_count}", &f.records.to_string())
            .replace("{name}", &enc(&f.name))
    }

    fn hmac(
        &self,
        secret: &str,
        path: Option<&std::path::Path>,
    ) -> Result<String, DestinationError> {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|e| DestinationError::new(ErrorClass::Permanent, format!("hmac: {e}")))?;
        let Some(path) = path else {
            return Ok(hex::encode(mac.finalize().into_bytes()));
        };
        let mut f = std::fs::File::open(path)
            .map_err(|e| DestinationError::new(io_class(&e), format!("{}: {e}", path.display())))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| DestinationError::new(io_class(&e), e.to_string()))?;
            if n == 0 {
                break;
            }
            mac.update(&buf[..n]);
        }
        Ok(hex::encode(mac.finalize().into_bytes()))
    }

    /// Send one file; `Ok(detail)` when the partner accepted it.
    /// Credentials and configured headers (which replace built-in ones of
    /// the same name). HMAC signs the file at `body`, or an empty body.
    fn decorate(
        &self,
        mut req: reqwest::blocking::RequestBuilder,
        s: &Shipment,
        f: &OutgoingFile,
        parts: usize,
        body: Option<&std::path::Path>,
    ) -> Result<reqwest::blocking::RequestBuilder, DestinationError> {
        req = match &self.cfg.auth {
            None => req,
            Some(HttpAuth::Bearer { token }) => req.bearer_auth(token.expose()),
            Some(HttpAuth::Basic { username, password }) => {
                req.basic_auth(&username.0, Some(password.expose()))
            }
            Some(HttpAuth::Hmac {
                secret,
                header,
                prefix,
            }) => {
                let sig = self.hmac(secret.expose(), body)?;
                req.header(header.as_str(), format!("{prefix}{sig}"))
            }
        };
        let mut custom = reqwest::header::HeaderMap::new();
        for (k, v) in &self.cfg.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| {
                DestinationError::new(ErrorClass::Permanent, format!("header name {k:?}: {e}"))
            })?;
            let value =
                reqwest::header::HeaderValue::from_str(&self.render(&v.0, s, f, parts, false))
                    .map_err(|e| {
                        DestinationError::new(ErrorClass::Permanent, format!("header {k}: {e}"))
                    })?;
            custom.insert(name, value);
        }
        Ok(req.headers(custom))
    }

    fn send(
        &self,
        client: &reqwest::blocking::Client,
        s: &Shipment,
        f: &OutgoingFile,
        parts: usize,
    ) -> Result<(String, Reply), DestinationError> {
        let url = self.render(&self.cfg.url.0, s, f, parts, true);
        let method = if self.cfg.method.eq_ignore_ascii_case("PUT") {
            reqwest::Method::PUT
        } else {
            reqwest::Method::POST
        };
        let file = std::fs::File::open(&f.path).map_err(|e| {
            DestinationError::new(io_class(&e), format!("{}: {e}", f.path.display()))
        })?;
        let mut req = client
            .request(method, &url)
            .header(
                "Content-Type",
                self.cfg
                    .content_type
                    .clone()
                    .unwrap_or_else(|| content_type(&f.name).to_string()),
            )
            .header(
                self.cfg.idempotency_header.as_str(),
                format!("{}-{}", s.batch_id, f.part),
            )
            .body(reqwest::blocking::Body::sized(file, f.bytes));
        req = self.decorate(req, s, f, parts, Some(&f.path))?;
        let at = format!("{} → {}", f.name, shown_url(&url));
        let resp = req.send().map_err(|e| send_error(&at, e))?;
        let status = resp.status().as_u16();
        let mut reply = Reply {
            code: Some(status as u32),
            message: resp.status().canonical_reason().unwrap_or("").to_string(),
            headers: resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).to_string(),
                    )
                })
                .collect(),
            body: None,
        };
        let wait = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        if (300..400).contains(&status) {
            let to = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            return Err(DestinationError::new(
                ErrorClass::Permanent,
                format!(
                    "{at}: partner redirected ({status}) to {}; redirects are not followed (the data would not arrive): update the url",
                    shown_url(&to)
                ),
            ));
        }
        // Replies are read up to 1 MiB: enough to judge, bounded in memory.
        let mut body = Vec::new();
        if let Err(e) =
            std::io::Read::read_to_end(&mut std::io::Read::take(resp, 1 << 20), &mut body)
        {
            return Err(DestinationError::new(
                ErrorClass::Transient,
                format!("{at}: reading the reply: {e}"),
            ));
        }
        reply.body = Some(String::from_utf8_lossy(&body).to_string());
        if self.cfg.success_status.contains(&status) {
            if let (Some(path), Some(want)) =
                (&self.cfg.success_json_path, &self.cfg.success_json_value)
            {
                let got = json_at(&body, path);
                if got.as_deref() != Some(want.as_str()) {
                    let mut err = DestinationError::new(
                        ErrorClass::Permanent,
                        format!(
                            "{at}: partner replied {status} but {path} is {}, not {want:?}: {}",
                            got.map_or("missing".into(), |g| format!("{g:?}")),
                            snippet(&body)
                        ),
                    );
                    err.reply = Some(Box::new(reply));
                    return Err(err);
                }
            }
            return Ok((format!("{at}: {status}"), reply));
        }
        let class = match status {
            401 | 403 => ErrorClass::Auth,
            404 | 410 => ErrorClass::NotFound,
            408 | 425 | 429 => ErrorClass::Transient,
            s if s >= 500 => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        };
        let mut err = DestinationError::new(
            class,
            format!("{at}: partner replied {status}: {}", snippet(&body)),
        );
        err.retry_after = wait;
        err.reply = Some(Box::new(reply));
        Err(err)
    }
}

/// A header value made ASCII: every non-ASCII byte as `%XX` (UTF-8).
fn ascii_header(v: &str) -> String {
    if v.is_ascii() {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 8);
    for b in v.bytes() {
        if b.is_ascii() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One part's upload: (detail, the partner's answer) or the error.
type PartResult = Result<(String, Reply), DestinationError>;

/// Classify a failed request. An untrusted or mismatched TLS certificate is
/// treated like a changed SSH host key: the delivery is suspended.
pub(crate) fn send_error(at: &str, e: reqwest::Error) -> DestinationError {
    let (timeout, connect) = (e.is_timeout(), e.is_connect());
    // Without the URL: its query may carry a key. `at` names the file and path.
    let e = e.without_url();
    let mut chain = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    let class = if lower.contains("certificate")
        || lower.contains("unknownissuer")
        || lower.contains("invalid peer")
    {
        ErrorClass::HostKey
    } else if timeout {
        ErrorClass::Timeout
    } else if connect {
        ErrorClass::Connect
    } else {
        ErrorClass::Transient
    };
    // reqwest's messages include the URL, never headers.
    if class == ErrorClass::HostKey {
        return DestinationError::new(
            class,
            format!("{at}: the server's TLS certificate is not trusted (set ca_file to the partner's CA, or fix the server's certificate): {chain}"),
        );
    }
    DestinationError::new(class, format!("{at}: {chain}"))
}

/// Percent-encode a value placed into a URL (RFC 3986 unreserved kept).
pub(crate) fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Rank of a failure when several chunks fail: the one that decides what
/// happens to the batch.
fn severity(c: ErrorClass) -> u8 {
    match c {
        ErrorClass::Auth | ErrorClass::HostKey | ErrorClass::PluginSuspended => 5,
        ErrorClass::Permission | ErrorClass::NotFound => 4,
        ErrorClass::Permanent => 3,
        ErrorClass::Connect | ErrorClass::Timeout | ErrorClass::Transient => 1,
    }
}

impl Destination for HttpDestination {
    fn describe(&self) -> String {
        format!(
            "http {} {}",
            self.cfg.method.to_ascii_uppercase(),
            shown_url(&self.cfg.url.0)
        )
    }

    fn deliver(&self, shipment: &Shipment) -> Result<Receipt, DestinationError> {
        let client = self.client()?;
        let data: Vec<&OutgoingFile> = shipment.files.iter().filter(|f| f.kind == "data").collect();
        let parts = data.len();
        let todo: Vec<&OutgoingFile> = data
            .iter()
            .copied()
            .filter(|f| !shipment.already.contains(&f.part))
            .collect();
        let next = AtomicUsize::new(0);
        // Refused credentials: do not keep sending the other chunks (lockouts).
        let stop = std::sync::atomic::AtomicBool::new(false);
        let results: Mutex<Vec<(u32, PartResult)>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..self.cfg.parallel.min(todo.len()).max(1) {
                scope.spawn(|| loop {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(f) = todo.get(i) else { break };
                    let r = self.send(&client, shipment, f, parts);
                    if matches!(&r, Err(e) if matches!(e.class, ErrorClass::Auth | ErrorClass::HostKey)) {
                        stop.store(true, Ordering::SeqCst);
                    }
                    if let (Ok(_), Some(cb)) = (&r, shipment.accepted) {
                        cb(f.part);
                    }
                    if let Ok(mut all) = results.lock() {
                        all.push((f.part, r));
                    }
                });
            }
        });
        let mut results = results.into_inner().unwrap_or_default();
        results.sort_by_key(|(p, _)| *p);
        let delivered: Vec<u32> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(p, _)| *p)
            .collect();
        let last_reply = results
            .iter()
            .rev()
            .find_map(|(_, r)| r.as_ref().ok().map(|(_, reply)| reply.clone()));
        let failed: Vec<(u32, DestinationError)> = results
            .into_iter()
            .filter_map(|(p, r)| r.err().map(|e| (p, e)))
            .collect();
        if failed.is_empty() {
            return Ok(Receipt {
                // The partner's last answer (response handlers read it).
                reply: last_reply,
                detail: format!(
                    "{}: {} of {parts} part(s) accepted ({} earlier)",
                    self.describe(),
                    delivered.len(),
                    shipment.already.len()
                ),
                delivered,
            });
        }
        let worst = failed
            .iter()
            .map(|(_, e)| e.class)
            .max_by_key(|c| severity(*c))
            .unwrap_or(ErrorClass::Transient);
        let wait = failed.iter().filter_map(|(_, e)| e.retry_after).max();
        // The answer that decided the class goes to the response handler.
        let reply = failed
            .iter()
            .find(|(_, e)| e.class == worst)
            .and_then(|(_, e)| e.reply.clone());
        // Bounded: a batch of thousands of parts must not make a huge line.
        const SHOWN: usize = 5;
        let mut list: Vec<String> = failed
            .iter()
            .take(SHOWN)
            .map(|(p, e)| format!("part {p}: {}", e.message))
            .collect();
        if failed.len() > SHOWN {
            list.push(format!("… and {} more", failed.len() - SHOWN));
        }
        let ids: Vec<String> = failed.iter().map(|(p, _)| p.to_string()).collect();
        let outstanding = if ids.len() > 50 {
            format!(
                "{} … {}",
                ids[..25].join(","),
                ids[ids.len() - 25..].join(",")
            )
        } else {
            ids.join(",")
        };
        let mut err = DestinationError::new(
            worst,
            format!(
                "{} of {parts} part(s) not accepted (outstanding: {outstanding}); {}",
                failed.len(),
                list.join("; ")
            ),
        );
        err.retry_after = wait;
        err.delivered = delivered;
        err.reply = reply;
        Err(err)
    }

    fn check(&self) -> Result<String, DestinationError> {
        // A HEAD to the URL a first chunk would use, with the configured
        // headers and credentials (HMAC signs an empty body).
        let client = self.client()?;
        let probe = OutgoingFile {
            part: 1,
            kind: "data".into(),
            records: 0,
            name: "consign-check".into(),
            path: std::path::PathBuf::new(),
            bytes: 0,
            sha256: String::new(),
        };
        let shipment = Shipment {
            batch_id: "check".into(),
            delivery: "check".into(),
            record_count: 0,
            cut_at: chrono::Utc::now(),
            zone: chrono_tz::UTC,
            files: Vec::new(),
            already: Vec::new(),
            accepted: None,
            component: None,
        };
        let url = self.render(&self.cfg.url.0, &shipment, &probe, 1, true);
        let shown = shown_url(&url);
        let req = self.decorate(client.head(&url), &shipment, &probe, 1, None)?;
        let resp = req.send().map_err(|e| send_error(&shown, e))?;
        let status = resp.status().as_u16();
        let tls = if self.cfg.insecure_skip_tls_verify {
            "TLS NOT verified (insecure_skip_tls_verify)"
        } else if url.starts_with("https://") {
            "TLS verified"
        } else {
            "plain HTTP"
        };
        match status {
            401 | 403 => Err(DestinationError::new(ErrorClass::Auth, format!("{shown}: credentials refused ({status})"))),
            // A per-batch path (`{batch_id}` …) filled in with "check" need not exist.
            404 | 410 if self.cfg.url.0.contains('{') => Ok(format!("{shown}: reachable, {tls}; HEAD on the per-batch path answered {status} (expected: the path is made for each batch)")),
            404 | 410 => Err(DestinationError::new(ErrorClass::NotFound, format!("{shown}: not found ({status})"))),
            300..=399 => Err(DestinationError::new(ErrorClass::Permanent, format!("{shown}: answered a redirect ({status}); redirects are not followed, so deliveries would fail: update the url"))),
            429 => Ok(format!("{shown}: reachable, {tls}; rate limited right now (429)")),
            s if s >= 500 => Err(DestinationError::new(ErrorClass::Transient, format!("{shown}: server error ({s})"))),
            s => Ok(format!("{shown}: reachable, HEAD answered {s}, {tls}; a HEAD cannot prove the endpoint accepts data")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = retry_after(&later).expect("date");
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        assert_eq!(retry_after("soon"), None);
        assert_eq!(retry_after("999999999"), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn json_paths() {
        assert_eq!(
            json_at(br#"{"status":"success","n":{"ok":true}}"#, "status").as_deref(),
            Some("success")
        );
        assert_eq!(
            json_at(br#"{"status":"success","n":{"ok":true}}"#, "n.ok").as_deref(),
            Some("true")
        );
        assert_eq!(json_at(br#"[1]"#, "x"), None);
    }
}

#[cfg(test)]
mod shown_url_tests {
    use crate::config::shown_url;

    #[test]
    fn credentials_query_and_fragment_are_never_shown() {
        assert_eq!(
            shown_url("http://user:s3cret@127.0.0.1:8085/in/x?key=abc#frag"),
            "http://***@127.0.0.1:8085/in/x"
        );
        assert_eq!(shown_url("https://tok@h/p@q"), "https://***@h/p@q");
        assert_eq!(shown_url("https://h:443/a/b"), "https://h:443/a/b");
        assert_eq!(shown_url("https://h?x=1"), "https://h");
        assert_eq!(super::ascii_header("café 1"), "caf%C3%A9 1");
    }
}
