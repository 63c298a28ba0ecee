//! `[delivery.destination]`: one variant per transport, each table refusing
//! unknown keys. Checks that need more than one key live in `load.rs`.

use super::{layout, ByteSize, Expanded, HumanDuration, Secret};
use crate::assemble::naming::NamePattern;
use indexmap::IndexMap;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[delivery.destination]`: where files go.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DestinationConfig {
    Local(LocalConfig),
    Sftp(SftpConfig),
    Http(HttpConfig),
    Ftp(FtpConfig),
    S3(S3Config),
    Gcs(GcsConfig),
    Azure(AzureConfig),
    Plugin(PluginDestConfig),
}

impl DestinationConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            DestinationConfig::Local(_) => "local",
            DestinationConfig::Sftp(_) => "sftp",
            DestinationConfig::Http(_) => "http",
            DestinationConfig::Ftp(_) => "ftp",
            DestinationConfig::S3(_) => "s3",
            DestinationConfig::Gcs(_) => "gcs",
            DestinationConfig::Azure(_) => "azure",
            DestinationConfig::Plugin(_) => "plugin",
        }
    }
}

/// `type = "local"`: a directory on this machine (the embedded default outbox).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    pub dir: PathBuf,
    /// Create the directory if it does not exist.
    #[serde(default = "layout::default_true")]
    pub create_dirs: bool,
}

/// `type = "plugin"`: a destination plugin from the plugins folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginDestConfig {
    /// The plugin's name (its `plugin.toml` `name`).
    pub plugin: String,
    /// The plugin's own settings, checked against its manifest's schema.
    /// String values may use `${env:NAME}` / `${file:PATH}`.
    #[serde(default)]
    pub config: toml::Table,
    /// Hosts the plugin may call over HTTP (`host:port`, `host`, `*.domain`, `*`);
    /// only those its manifest also asks for are granted.
    #[serde(default)]
    pub allow_http: Vec<String>,
    /// Environment variables the plugin may read (if its manifest asks for them).
    #[serde(default)]
    pub allow_env: Vec<String>,
    /// Extra CA certificate(s) (PEM) trusted for the plugin's HTTPS calls.
    pub ca_file: Option<PathBuf>,
    /// Override `[plugins] memory_limit` for this destination.
    pub memory_limit: Option<ByteSize>,
    /// Override `[plugins] timeout` for this destination.
    pub timeout: Option<HumanDuration>,
    /// Override `[plugins] fuel` (only counted when `[plugins] fuel` is set).
    pub fuel: Option<u64>,
}

/// `type = "sftp"`: an SSH file server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpConfig {
    pub host: Expanded,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub username: Expanded,
    pub password: Option<Secret>,
    /// Path of an OpenSSH private key.
    pub private_key: Option<PathBuf>,
    pub passphrase: Option<Secret>,
    /// known_hosts file; default `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Accept any host key. Only for one destination you have checked by other means.
    #[serde(default)]
    pub insecure_accept_any_host_key: bool,
    /// Remote directory the files are placed in.
    #[serde(default = "default_remote_dir")]
    pub remote_dir: String,
    #[serde(default = "layout::default_true")]
    pub create_dirs: bool,
    /// Suffix of the temporary name used during upload.
    #[serde(default = "default_temp_suffix")]
    pub temp_suffix: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    #[serde(default = "default_io_timeout")]
    pub io_timeout: HumanDuration,
}

fn default_ssh_port() -> u16 {
    22
}
fn default_remote_dir() -> String {
    ".".to_string()
}
fn default_temp_suffix() -> String {
    ".part".to_string()
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_io_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(120))
}

/// `type = "http"`: one request per data file (chunk: use `file.split_records`
/// with format `json` or `ndjson` for N records per request).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// URL; may use `{batch_id} {delivery} {part} {parts} {record_count} {name}`.
    pub url: Expanded,
    /// `POST` (default) or `PUT`.
    #[serde(default = "default_method")]
    pub method: String,
    pub auth: Option<HttpAuth>,
    /// Extra headers; values may use the URL placeholders.
    #[serde(default)]
    pub headers: indexmap::IndexMap<String, Expanded>,
    /// Content type of the body (default from the file: JSON, NDJSON, CSV, XML, gzip).
    pub content_type: Option<String>,
    /// Requests in flight at once.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Statuses that mean success.
    #[serde(default = "default_success")]
    pub success_status: Vec<u16>,
    /// Also require this dotted path in the JSON reply…
    pub success_json_path: Option<String>,
    /// …to have this value (compared as text: `"success"`, `true`, `1`).
    pub success_json_value: Option<String>,
    /// Header carrying a stable key per file, the same on every retry.
    #[serde(default = "default_idempotency")]
    pub idempotency_header: String,
    #[serde(default = "default_http_timeout")]
    pub timeout: HumanDuration,
    /// Extra CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Accept any TLS certificate. Only for one destination you have checked by other means.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
}

/// `auth = { type = "bearer", token = "…" }`, `{ type = "basic", username, password }`
/// or `{ type = "hmac", secret, header = "X-Signature-256", prefix = "sha256=" }`
/// (HMAC-SHA256 of the body, hex).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuth {
    Bearer {
        token: Secret,
    },
    Basic {
        username: Expanded,
        password: Secret,
    },
    Hmac {
        secret: Secret,
        #[serde(default = "default_hmac_header")]
        header: String,
        #[serde(default = "default_hmac_prefix")]
        prefix: String,
    },
}

fn default_method() -> String {
    "POST".into()
}
fn default_parallel() -> usize {
    4
}
fn default_success() -> Vec<u16> {
    vec![200, 201, 202, 204]
}
fn default_idempotency() -> String {
    "Idempotency-Key".into()
}
fn default_http_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_hmac_header() -> String {
    "X-Signature-256".into()
}
fn default_hmac_prefix() -> String {
    "sha256=".into()
}

/// `type = "ftp"`: FTP, or FTPS with explicit TLS (`AUTH TLS`, the default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtpConfig {
    pub host: Expanded,
    #[serde(default = "default_ftp_port")]
    pub port: u16,
    pub username: Expanded,
    pub password: Secret,
    /// `explicit` (AUTH TLS on the control port, data connections protected
    /// and resuming the control connection's TLS session) or `none`
    /// (plain FTP: credentials and files travel in clear text).
    #[serde(default)]
    pub tls: FtpTls,
    /// Extra CA certificate (PEM) to trust for this server.
    pub ca_file: Option<PathBuf>,
    /// Accept any TLS certificate. Only for one destination you have checked by other means.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// Highest TLS version: `"1.2"` (default: every data connection can
    /// resume the control session) or `"1.3"` (for servers that refuse 1.2;
    /// TLS 1.3 tickets are single-use, so servers demanding session reuse
    /// may refuse later data connections).
    #[serde(default)]
    pub tls_max: FtpTlsMax,
    /// `auto` (EPSV, falling back to PASV when the server does not know
    /// EPSV), `epsv` or `pasv`.
    #[serde(default)]
    pub passive: FtpPassive,
    #[serde(default = "default_remote_dir")]
    pub remote_dir: String,
    #[serde(default = "layout::default_true")]
    pub create_dirs: bool,
    #[serde(default = "default_temp_suffix")]
    pub temp_suffix: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    #[serde(default = "default_io_timeout")]
    pub io_timeout: HumanDuration,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FtpTls {
    #[default]
    Explicit,
    None,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum FtpTlsMax {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FtpPassive {
    #[default]
    Auto,
    Epsv,
    Pasv,
}

fn default_ftp_port() -> u16 {
    21
}

/// What object-store destinations (S3, GCS, Azure) share: where in the
/// bucket files go and what is stored with them (the same three keys in
/// each of their tables).
#[derive(Debug, Clone, Copy)]
pub struct ObjectOptions<'a> {
    pub prefix: Option<&'a NamePattern>,
    pub metadata: &'a IndexMap<String, String>,
    pub content_type: Option<&'a str>,
}

macro_rules! object_options {
    ($($t:ty),*) => {$(
        impl $t {
            pub fn object(&self) -> ObjectOptions<'_> {
                ObjectOptions {
                    prefix: self.prefix.as_ref(),
                    metadata: &self.metadata,
                    content_type: self.content_type.as_deref(),
                }
            }
        }
    )*};
}
object_options!(S3Config, GcsConfig, AzureConfig);

/// `type = "s3"`: Amazon S3 or an S3-compatible store (`endpoint`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: Expanded,
    pub region: Option<Expanded>,
    /// S3-compatible endpoint, e.g. `https://minio.example.com:9000`.
    pub endpoint: Option<Expanded>,
    /// Static keys; without them the AWS environment, web identity
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE`), container and instance-profile
    /// credentials are tried.
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    /// `STANDARD`, `STANDARD_IA`, `INTELLIGENT_TIERING`, `GLACIER_IR`, …
    pub storage_class: Option<String>,
    /// Server-side encryption: `AES256` or `aws:kms` (with `kms_key_id`).
    pub sse: Option<String>,
    pub kms_key_id: Option<String>,
    /// Use `bucket.host` instead of `host/bucket` addressing.
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// Files from this size up go up in parts.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: ByteSize,
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    #[serde(default = "default_http_timeout")]
    pub timeout: HumanDuration,
    /// Key prefix, e.g. `incoming/{year}/{month}/{day}`: the object key is
    /// `prefix/` + the file name. Rendered from the batch's cut time in the
    /// delivery's zone, so every attempt writes the same keys.
    pub prefix: Option<NamePattern>,
    /// User metadata; values may use `{batch_id} {delivery} {record_count}
    /// (records in this file) {batch_record_count} {name} {part} {parts}
    /// {sha256}`. Non-ASCII is stored percent-encoded on S3 and Azure.
    #[serde(default)]
    pub metadata: IndexMap<String, String>,
    /// Content type; default from the file name (`application/gzip` for
    /// `.gz`, `text/csv`, …). `Content-Encoding` is never set.
    pub content_type: Option<String>,
}

fn default_multipart_threshold() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_part_size() -> ByteSize {
    ByteSize(16 << 20)
}

/// `type = "gcs"`: Google Cloud Storage through its JSON API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsConfig {
    pub bucket: Expanded,
    /// API endpoint; default `https://storage.googleapis.com`. For the
    /// emulator: `http://127.0.0.1:4443` with `auth = "none"`.
    pub endpoint: Option<Expanded>,
    /// `service_account` (`credentials_file`: a service-account JSON key),
    /// `default` (GOOGLE_APPLICATION_CREDENTIALS, workload identity /
    /// metadata server, gcloud) or `none` (emulators only).
    #[serde(default)]
    pub auth: GcsAuth,
    pub credentials_file: Option<PathBuf>,
    /// Replace an existing object of the same name. Default: refuse
    /// (an identical object, same MD5, counts as already delivered).
    #[serde(default)]
    pub overwrite: bool,
    /// `STANDARD`, `NEARLINE`, `COLDLINE`, `ARCHIVE`.
    pub storage_class: Option<String>,
    /// Resumable uploads send the file in chunks of this size (a multiple of 256 KiB).
    #[serde(default = "default_gcs_chunk")]
    pub chunk_size: ByteSize,
    #[serde(default = "default_http_timeout")]
    pub timeout: HumanDuration,
    /// Key prefix, e.g. `incoming/{year}/{month}/{day}`: the object key is
    /// `prefix/` + the file name. Rendered from the batch's cut time in the
    /// delivery's zone, so every attempt writes the same keys.
    pub prefix: Option<NamePattern>,
    /// User metadata; values may use `{batch_id} {delivery} {record_count}
    /// (records in this file) {batch_record_count} {name} {part} {parts}
    /// {sha256}`. Non-ASCII is stored percent-encoded on S3 and Azure.
    #[serde(default)]
    pub metadata: IndexMap<String, String>,
    /// Content type; default from the file name (`application/gzip` for
    /// `.gz`, `text/csv`, …). `Content-Encoding` is never set.
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GcsAuth {
    #[default]
    Default,
    ServiceAccount,
    None,
}

fn default_gcs_chunk() -> ByteSize {
    ByteSize(8 << 20)
}

/// `type = "azure"`: Azure Blob Storage (block blobs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    pub account: Expanded,
    pub container: Expanded,
    /// Shared key; without it (and without `sas_token`) the Azure
    /// environment / managed identity / workload identity is used.
    pub access_key: Option<Secret>,
    /// SAS token (query string, with or without the leading `?`).
    pub sas_token: Option<Secret>,
    /// Blob endpoint, e.g. `http://127.0.0.1:10000/devstoreaccount1` for azurite.
    pub endpoint: Option<Expanded>,
    /// `Hot`, `Cool`, `Cold` or `Archive`.
    pub access_tier: Option<String>,
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: ByteSize,
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    #[serde(default = "default_http_timeout")]
    pub timeout: HumanDuration,
    /// Key prefix, e.g. `incoming/{year}/{month}/{day}`: the object key is
    /// `prefix/` + the file name. Rendered from the batch's cut time in the
    /// delivery's zone, so every attempt writes the same keys.
    pub prefix: Option<NamePattern>,
    /// User metadata; values may use `{batch_id} {delivery} {record_count}
    /// (records in this file) {batch_record_count} {name} {part} {parts}
    /// {sha256}`. Non-ASCII is stored percent-encoded on S3 and Azure.
    #[serde(default)]
    pub metadata: IndexMap<String, String>,
    /// Content type; default from the file name (`application/gzip` for
    /// `.gz`, `text/csv`, …). `Content-Encoding` is never set.
    pub content_type: Option<String>,
}

/// Placeholders in `{…}` form the object metadata templates may use.
pub const METADATA_PLACEHOLDERS: &[&str] = &[
    "{batch_id}",
    "{delivery}",
    "{record_count}",
    "{batch_record_count}",
    "{name}",
    "{part}",
    "{parts}",
    "{sha256}",
];

/// The `{…}` placeholders in `template` that are not in `known`.
pub fn unknown_placeholders<'t>(template: &'t str, known: &[&str]) -> Vec<&'t str> {
    let mut bad = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let end = rest[i..].find('}').map_or(rest.len(), |e| i + e + 1);
        if !known.contains(&&rest[i..end]) {
            bad.push(&rest[i..end]);
        }
        rest = &rest[end..];
    }
    bad
}

fn readable_pem(path: &std::path::Path) -> bool {
    std::fs::read(path)
        .ok()
        .is_some_and(|pem| pem.windows(11).any(|w| w == b"-----BEGIN "))
}

impl DestinationConfig {
    /// Checks of the FTP and object-store destinations that need more than
    /// one key: `(key under destination, message)`. Relative paths are
    /// taken from `base` (the config file's folder).
    pub fn problems(&self, base: &std::path::Path) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut push = |k: &str, m: String| out.push((k.to_string(), m));
        let abs = |p: &PathBuf| {
            if p.is_relative() {
                base.join(p)
            } else {
                p.clone()
            }
        };
        let metadata = |push: &mut dyn FnMut(&str, String), m: &IndexMap<String, String>| {
            for (k, v) in m {
                let key_ok = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !key_ok {
                    push(
                        "metadata",
                        format!("{k:?}: metadata names may use only letters, digits, `-` and `_`"),
                    );
                }
                for p in unknown_placeholders(v, METADATA_PLACEHOLDERS) {
                    push(
                        &format!("metadata.{k}"),
                        format!(
                            "unknown placeholder {p}; known: {}",
                            METADATA_PLACEHOLDERS.join(" ")
                        ),
                    );
                }
                if v.contains(['\r', '\n']) {
                    push(
                        &format!("metadata.{k}"),
                        "a value cannot contain a line break".into(),
                    );
                }
            }
        };
        let endpoint = |push: &mut dyn FnMut(&str, String), e: &Option<Expanded>| {
            if let Some(e) = e {
                if let Err(why) = super::secret::check_http_url(&e.0) {
                    push("endpoint", why);
                }
            }
        };
        let timeout = |push: &mut dyn FnMut(&str, String), t: &HumanDuration| {
            if t.0.is_zero() {
                push("timeout", "must be more than 0".into());
            }
        };
        let bucket = |push: &mut dyn FnMut(&str, String), key: &str, b: &Expanded| {
            if b.0.contains("://") || b.0.contains('/') || b.0.is_empty() {
                push(
                    key,
                    format!("{:?}: give the bare name (no scheme, no `/`)", b.0),
                );
            }
        };
        match self {
            DestinationConfig::Plugin(p) => {
                if p.plugin.is_empty() {
                    push(
                        "plugin",
                        "give the plugin's name (its plugin.toml `name`)".into(),
                    );
                }
                for a in &p.allow_http {
                    if a.is_empty() || a.contains("://") || a.contains('/') {
                        push(
                            "allow_http",
                            format!(
                                "{a:?}: give host, host:port, *.domain or * (no scheme, no path)"
                            ),
                        );
                    }
                }
                if p.memory_limit.is_some_and(|m| m.0 < (1 << 20)) {
                    push("memory_limit", "must be at least 1MiB".into());
                }
                if p.timeout.is_some_and(|t| t.0.is_zero()) {
                    push("timeout", "must be more than 0".into());
                }
            }
            DestinationConfig::Ftp(f) => {
                if f.host.0.contains("://") || f.host.0.contains('/') {
                    push(
                        "host",
                        format!(
                            "{:?}: give the host name only (no scheme, no path)",
                            f.host.0
                        ),
                    );
                }
                if f.remote_dir.contains('{') {
                    push(
                        "remote_dir",
                        "placeholders are not expanded here: put them in `file.name` (it may contain `/`)".into(),
                    );
                }
                if f.insecure_skip_tls_verify && f.ca_file.is_some() {
                    push(
                        "insecure_skip_tls_verify",
                        "set together with `ca_file`: choose one (verification with the CA, or none)".into(),
                    );
                }
                if f.temp_suffix.is_empty() || f.temp_suffix.contains('/') {
                    push(
                        "temp_suffix",
                        "must be a non-empty suffix without `/`".into(),
                    );
                }
                if let Some(ca) = &f.ca_file {
                    if !readable_pem(&abs(ca)) {
                        push(
                            "ca_file",
                            format!("{} is not a readable PEM certificate", abs(ca).display()),
                        );
                    }
                    if f.tls == FtpTls::None {
                        push("ca_file", "set, but `tls = \"none\"` uses no TLS".into());
                    }
                }
                if f.insecure_skip_tls_verify && f.tls == FtpTls::None {
                    push(
                        "insecure_skip_tls_verify",
                        "set, but `tls = \"none\"` uses no TLS".into(),
                    );
                }
            }
            DestinationConfig::S3(c) => {
                endpoint(&mut push, &c.endpoint);
                timeout(&mut push, &c.timeout);
                bucket(&mut push, "bucket", &c.bucket);
                if let (true, Some(e)) = (c.virtual_hosted_style, &c.endpoint) {
                    let host = e.0.split("://").nth(1).unwrap_or("");
                    if !host.starts_with(&format!("{}.", c.bucket.0)) {
                        push(
                            "virtual_hosted_style",
                            format!("with a custom endpoint the endpoint must name the bucket host ({}://{}.…); or leave virtual_hosted_style off", e.0.split("://").next().unwrap_or("https"), c.bucket.0),
                        );
                    }
                }
                const S3_CLASSES: &[&str] = &[
                    "STANDARD",
                    "REDUCED_REDUNDANCY",
                    "STANDARD_IA",
                    "ONEZONE_IA",
                    "INTELLIGENT_TIERING",
                    "GLACIER",
                    "DEEP_ARCHIVE",
                    "OUTPOSTS",
                    "GLACIER_IR",
                    "SNOW",
                    "EXPRESS_ONEZONE",
                ];
                if let Some(class) = &c.storage_class {
                    if !S3_CLASSES.contains(&class.as_str()) {
                        push(
                            "storage_class",
                            format!("{class:?}: use one of {}", S3_CLASSES.join(", ")),
                        );
                    }
                }
                metadata(&mut push, &c.metadata);
                if c.access_key_id.is_some() != c.secret_access_key.is_some() {
                    push(
                        "access_key_id",
                        "set both access_key_id and secret_access_key, or neither (environment / role credentials)".into(),
                    );
                }
                if c.session_token.is_some() && c.access_key_id.is_none() {
                    push(
                        "session_token",
                        "needs access_key_id and secret_access_key".into(),
                    );
                }
                match c.sse.as_deref() {
                    None | Some("AES256") => {
                        if c.kms_key_id.is_some() {
                            push("kms_key_id", "needs `sse = \"aws:kms\"`".into());
                        }
                    }
                    Some("aws:kms") => {}
                    Some(other) => push("sse", format!("{other:?}: use \"AES256\" or \"aws:kms\"")),
                }
                if c.part_size.0 < 5 << 20 {
                    push("part_size", "S3 parts must be at least 5 MiB".into());
                }
            }
            DestinationConfig::Gcs(c) => {
                endpoint(&mut push, &c.endpoint);
                timeout(&mut push, &c.timeout);
                bucket(&mut push, "bucket", &c.bucket);
                if let Some(class) = &c.storage_class {
                    const GCS_CLASSES: &[&str] = &["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"];
                    if !GCS_CLASSES.contains(&class.as_str()) {
                        push(
                            "storage_class",
                            format!("{class:?}: use one of {}", GCS_CLASSES.join(", ")),
                        );
                    }
                }
                if let (GcsAuth::ServiceAccount, Some(p)) = (c.auth, &c.credentials_file) {
                    let p = abs(p);
                    if p.is_file() {
                        let parsed = std::fs::read_to_string(&p)
                            .ok()
                            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
                        let ok = parsed.as_ref().is_some_and(|v| {
                            v["type"] == "service_account"
                                && v["client_email"].is_string()
                                && v["private_key"].is_string()
                        });
                        if !ok {
                            push(
                                "credentials_file",
                                format!("{} is not a service-account JSON key (needs type = service_account, client_email, private_key)", p.display()),
                            );
                        }
                    }
                }
                metadata(&mut push, &c.metadata);
                match (c.auth, &c.credentials_file) {
                    (GcsAuth::ServiceAccount, None) => push(
                        "credentials_file",
                        "`auth = \"service_account\"` needs the path of a service-account JSON key"
                            .into(),
                    ),
                    (GcsAuth::ServiceAccount, Some(p)) if !abs(p).is_file() => push(
                        "credentials_file",
                        format!("{} is not a readable file", abs(p).display()),
                    ),
                    (GcsAuth::Default | GcsAuth::None, Some(_)) => push(
                        "credentials_file",
                        "only used with `auth = \"service_account\"`".into(),
                    ),
                    _ => {}
                }
                if c.chunk_size.0 == 0 || c.chunk_size.0 % (256 << 10) != 0 {
                    push("chunk_size", "must be a multiple of 256 KiB".into());
                }
            }
            DestinationConfig::Azure(c) => {
                endpoint(&mut push, &c.endpoint);
                timeout(&mut push, &c.timeout);
                let name = &c.container.0;
                let valid = (3..=63).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !name.starts_with('-')
                    && !name.ends_with('-')
                    && !name.contains("--");
                if !valid {
                    push(
                        "container",
                        format!("{name:?}: container names are 3-63 lowercase letters, digits and single hyphens"),
                    );
                }
                if let Some(k) = &c.access_key {
                    use base64::Engine;
                    if base64::engine::general_purpose::STANDARD
                        .decode(k.expose().trim())
                        .is_err()
                    {
                        push(
                            "access_key",
                            "is not base64 (copy the storage account key as shown in the portal)"
                                .into(),
                        );
                    }
                }
                metadata(&mut push, &c.metadata);
                if let Some(t) = &c.access_tier {
                    if !["Hot", "Cool", "Cold", "Archive"].contains(&t.as_str()) {
                        push(
                            "access_tier",
                            format!("{t:?}: use Hot, Cool, Cold or Archive"),
                        );
                    }
                }
                if c.access_key.is_some() && c.sas_token.is_some() {
                    push("sas_token", "set access_key or sas_token, not both".into());
                }
                if c.part_size.0 < 64 << 10 {
                    push("part_size", "must be at least 64 KiB".into());
                }
            }
            DestinationConfig::Local(_)
            | DestinationConfig::Sftp(_)
            | DestinationConfig::Http(_) => {}
        }
        out
    }
}
