//! Loading and validating the config file. Each section and each key of a
//! `[[delivery]]` is read on its own so that one run reports every error, each
//! with its key path and line.

use super::*;
use crate::trigger::schedule::Zone;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use toml::de::{DeTable, DeValue, Deserializer};
use toml::Spanned;

/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `delivery[acme].destination.port`.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// All problems found in one config file.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} error{} in configuration",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  {}:{e}", self.file.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Read and validate a config file. Relative paths inside are resolved
/// against the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        file: path.to_path_buf(),
        errors: vec![ConfigError {
            path: "(file)".into(),
            line: None,
            message: format!("cannot read: {e}"),
        }],
    })?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    load_str(&text, path, &base)
}

/// Validate config text; `file` is used in messages, `base` for relative paths.
pub fn load_str(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigErrors> {
    let mut cx = Cx {
        raw: text,
        base,
        errors: Vec::new(),
    };
    let root = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            cx.push_toml("(syntax)", &e);
            return Err(cx.into_errors(file));
        }
    };
    let mut store = StoreConfig::default();
    let mut server = ServerConfig::default();
    let mut scripts = ScriptsConfig::default();
    let mut plugins = PluginsConfig::default();
    let mut deliveries = Vec::new();
    for (key, value) in root.get_ref().iter() {
        match key.get_ref().as_ref() {
            "store" => {
                if let Some(s) = cx.value::<StoreConfig>("store", value) {
                    store = s;
                }
            }
            "server" => {
                if let Some(s) = cx.value::<ServerConfig>("server", value) {
                    if s.listen.parse::<std::net::SocketAddr>().is_err() && !s.listen.contains(':')
                    {
                        cx.push(
                            "server.listen",
                            Some(value.span()),
                            format!("{:?} is not HOST:PORT", s.listen),
                        );
                    }
                    if let Some(port) = s.listen.rsplit(':').next() {
                        if port.parse::<u16>().is_err() {
                            cx.push(
                                "server.listen",
                                Some(value.span()),
                                format!("{:?}: port must be 0-65535", s.listen),
                            );
                        }
                    }
                    server = s;
                }
            }
            "scripts" => {
                if let Some(s) = cx.value::<ScriptsConfig>("scripts", value) {
                    scripts = s;
                }
            }
            "plugins" => {
                if let Some(p) = cx.value::<PluginsConfig>("plugins", value) {
                    plugins = p;
                }
            }
            "delivery" => match value.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(d) = cx.delivery(i, item) {
                            deliveries.push(d);
                        }
                    }
                }
                _ => cx.push(
                    "delivery",
                    Some(value.span()),
                    "must be an array of tables: write each one as [[delivery]]".into(),
                ),
            },
            other => cx.push(
                other,
                Some(key.span()),
                "unknown top-level key (expected `store`, `server`, `scripts`, `plugins` or `[[delivery]]`)"
                    .into(),
            ),
        }
    }
    let mut seen = HashSet::new();
    for d in &deliveries {
        if !seen.insert(d.name.clone()) {
            cx.push(
                &format!("delivery[{}].name", d.name),
                None,
                "duplicate delivery name".into(),
            );
        }
    }
    if plugins.memory_limit.0 < (1 << 20) {
        cx.push("plugins.memory_limit", None, "must be at least 1MiB".into());
    }
    if plugins.timeout.0.is_zero() {
        cx.push("plugins.timeout", None, "must be more than 0".into());
    }
    for d in &deliveries {
        if let DestinationConfig::Plugin(p) = &d.destination {
            if p.fuel.is_some() && plugins.fuel.is_none() {
                cx.push(
                    &format!("delivery[{}].destination.fuel", d.name),
                    None,
                    "fuel is only counted when [plugins] fuel is set too (it turns fuel metering on for the engine)".into(),
                );
            }
        }
    }
    if deliveries.is_empty() && cx.errors.is_empty() {
        cx.push("delivery", None, "no [[delivery]] blocks: nothing would ever be delivered (`consign init` writes a starter)".into());
    }
    if !cx.errors.is_empty() {
        return Err(cx.into_errors(file));
    }
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    resolve(&mut store.path);
    resolve(&mut store.spool_dir);
    resolve(&mut scripts.dir);
    resolve(&mut plugins.dir);
    resolve(&mut plugins.cache_dir);
    for d in &mut deliveries {
        if let Some(s) = d.scripts.as_mut() {
            s.limits.get_or_insert(scripts.limits);
        }
        match &mut d.destination {
            DestinationConfig::Local(l) => resolve(&mut l.dir),
            DestinationConfig::Ftp(f) => {
                if let Some(k) = f.ca_file.as_mut() {
                    resolve(k)
                }
            }
            DestinationConfig::Gcs(g) => {
                if let Some(k) = g.credentials_file.as_mut() {
                    resolve(k)
                }
            }
            DestinationConfig::S3(_) | DestinationConfig::Azure(_) => {}
            DestinationConfig::Plugin(p) => {
                if let Some(k) = p.ca_file.as_mut() {
                    resolve(k)
                }
            }
            DestinationConfig::Http(h) => {
                if let Some(k) = h.ca_file.as_mut() {
                    resolve(k)
                }
            }
            DestinationConfig::Sftp(s) => {
                if let Some(k) = s.private_key.as_mut() {
                    resolve(k)
                }
                if let Some(k) = s.known_hosts.as_mut() {
                    resolve(k)
                }
            }
        }
    }
    Ok(Config {
        source: file.to_path_buf(),
        store,
        server,
        scripts,
        plugins,
        deliveries,
    })
}

struct Cx<'r> {
    raw: &'r str,
    base: &'r Path,
    errors: Vec<ConfigError>,
}

impl<'r> Cx<'r> {
    fn line_of(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.raw.len());
        self.raw.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn push(&mut self, path: &str, span: Option<Range<usize>>, message: String) {
        let line = span.map(|s| self.line_of(&s));
        self.errors.push(ConfigError {
            path: path.to_string(),
            line,
            message,
        });
    }

    fn push_toml(&mut self, path: &str, e: &toml::de::Error) {
        self.push(path, e.span(), e.message().trim().to_string());
    }

    fn into_errors(mut self, file: &Path) -> ConfigErrors {
        // In file order; errors without a line last.
        self.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        ConfigErrors {
            file: file.to_path_buf(),
            errors: self.errors,
        }
    }

    /// Deserialize one value (scalar or table) with spans kept for errors.
    fn value<T: DeserializeOwned>(
        &mut self,
        path: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<T> {
        match Self::parse_one::<T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                // A table stops at its first bad key: try each key alone to
                // report all of them, each with its own key path and line.
                let mut found = false;
                if let DeValue::Table(t) = value.get_ref() {
                    // An internally tagged table (`type = "ftp"`) needs its tag
                    // beside each key to say which fields are valid.
                    let tag = t.iter().find(|(k, _)| k.get_ref() == "type");
                    for (k, v) in t.iter() {
                        let mut single = DeTable::new();
                        if let Some((tk, tv)) = tag {
                            single.insert(tk.clone(), tv.clone());
                        }
                        single.insert(k.clone(), v.clone());
                        let alone = Spanned::new(v.span(), DeValue::Table(single));
                        if let Err(err) = Self::parse_one::<T>(&alone) {
                            if !err.message().starts_with("missing field") {
                                self.push_toml(&format!("{path}.{}", k.get_ref()), &err);
                                found = true;
                            }
                        }
                    }
                }
                if !found {
                    self.push_toml(path, &e);
                }
                None
            }
        }
    }

    fn parse_one<T: DeserializeOwned>(value: &Spanned<DeValue<'_>>) -> Result<T, toml::de::Error> {
        let mut one = DeTable::new();
        one.insert(Spanned::new(value.span(), "v".into()), value.clone());
        let de = Deserializer::from(Spanned::new(value.span(), one));
        let mut m = BTreeMap::<String, T>::deserialize(de)?;
        m.remove("v")
            .ok_or_else(|| serde::de::Error::custom("empty value"))
    }

    fn delivery(&mut self, index: usize, item: &Spanned<DeValue<'_>>) -> Option<DeliveryConfig> {
        let DeValue::Table(table) = item.get_ref() else {
            self.push(
                &format!("delivery[{index}]"),
                Some(item.span()),
                "must be a table".into(),
            );
            return None;
        };
        let errors_before = self.errors.len();
        let name = match table.get("name") {
            Some(v) => self.value::<String>(&format!("delivery[{index}].name"), v),
            None => {
                self.push(
                    &format!("delivery[{index}]"),
                    Some(item.span()),
                    "missing key `name`".into(),
                );
                None
            }
        };
        let label = match &name {
            Some(n) => format!("delivery[{n}]"),
            None => format!("delivery[{index}]"),
        };
        if let Some(n) = &name {
            if n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                let span = table.get("name").map(|v| v.span());
                self.push(
                    &format!("{label}.name"),
                    span,
                    format!("{n:?} is not a valid delivery name: use letters, digits, `-` and `_`"),
                );
            }
        }
        let mut timezone = None;
        let mut trigger = TriggerConfig::default();
        let mut batch = BatchConfig::default();
        let mut layout = Layout::default();
        let mut encryption = None;
        let mut destination = None;
        let mut retry = RetryConfig::default();
        let mut scripts: Option<DeliveryScripts> = None;
        for (key, value) in table.iter() {
            let k = key.get_ref().as_ref();
            let path = format!("{label}.{k}");
            match k {
                "name" => {}
                "timezone" => timezone = self.value::<Zone>(&path, value),
                "trigger" => trigger = self.value(&path, value).unwrap_or_default(),
                "batch" => batch = self.value(&path, value).unwrap_or_default(),
                "file" => layout.file = self.value(&path, value).unwrap_or_default(),
                "csv" => layout.csv = self.value(&path, value).unwrap_or_default(),
                "xml" => layout.xml = self.value(&path, value).unwrap_or_default(),
                "json" => layout.json = self.value(&path, value).unwrap_or_default(),
                "fixed_width" => layout.fixed_width = self.value(&path, value).unwrap_or_default(),
                "field" => layout.fields = self.value(&path, value).unwrap_or_default(),
                "manifest" => layout.manifest = self.value(&path, value).unwrap_or_default(),
                "encryption" => encryption = self.value::<EncryptionConfig>(&path, value),
                "destination" => destination = self.value::<DestinationConfig>(&path, value),
                "retry" => retry = self.value(&path, value).unwrap_or_default(),
                "script" => scripts = self.value::<DeliveryScripts>(&path, value),
                _ => self.push(
                    &path,
                    Some(key.span()),
                    "unknown key (expected name, timezone, trigger, batch, file, csv, xml, json, fixed_width, field, manifest, encryption, destination, retry, script)".into(),
                ),
            }
        }
        let span_of = |keys: &[&str]| -> Option<Range<usize>> {
            let mut cur = table;
            let mut span = Some(item.span());
            for (i, k) in keys.iter().enumerate() {
                let v = cur.get(*k)?;
                span = Some(v.span());
                if i + 1 < keys.len() {
                    cur = v.get_ref().as_table()?;
                }
            }
            span
        };
        if destination.is_none() && !table.contains_key("destination") {
            self.push(
                &format!("{label}.destination"),
                Some(item.span()),
                "missing [delivery.destination] table".into(),
            );
        }
        let timezone = timezone.unwrap_or_default();
        layout.timezone = timezone;
        layout.encrypted = encryption.is_some();
        let pgp_name = [".pgp", ".gpg", ".asc"]
            .iter()
            .any(|e| layout.file.name.literal_suffix().ends_with(e));
        if pgp_name != layout.encrypted {
            self.push(
                &format!("{label}.file.name"),
                span_of(&["file", "name"]),
                if layout.encrypted {
                    "encryption is on: the name should end in .pgp, .gpg or .asc so the partner knows to decrypt".into()
                } else {
                    "the name ends in .pgp/.gpg/.asc but there is no [delivery.encryption]: the file would be sent in clear".into()
                },
            );
        }

        // Cross-field rules.
        if trigger.cron.is_some() && trigger.at.is_some() {
            self.push(
                &format!("{label}.trigger.at"),
                span_of(&["trigger", "at"]),
                "`cron` and `at` both set: use one schedule form".into(),
            );
        } else if let Some(expr) = trigger.cron.clone() {
            match Schedule::cron(&expr, timezone) {
                Ok(s) if s.next_after(chrono::Utc::now()).is_none() => self.push(
                    &format!("{label}.trigger.cron"),
                    span_of(&["trigger", "cron"]),
                    format!("{expr:?} never fires (no such date in the next five years)"),
                ),
                Ok(s) => trigger.schedule = Some(s),
                Err(e) => self.push(
                    &format!("{label}.trigger.cron"),
                    span_of(&["trigger", "cron"]),
                    e,
                ),
            }
        } else if let Some(at) = trigger.at.clone() {
            match Schedule::simple(&at, trigger.days.as_deref().unwrap_or(&[]), timezone) {
                Ok(s) => trigger.schedule = Some(s),
                Err(e) => self.push(
                    &format!("{label}.trigger.at"),
                    span_of(&["trigger", "at"]),
                    e,
                ),
            }
        } else if trigger.days.is_some() {
            self.push(
                &format!("{label}.trigger.days"),
                span_of(&["trigger", "days"]),
                "`days` needs `at` (a time of day such as \"02:00\")".into(),
            );
        }
        if batch.max_records == 0 {
            self.push(
                &format!("{label}.batch.max_records"),
                span_of(&["batch", "max_records"]),
                "must be at least 1".into(),
            );
        }
        if let Some(n) = trigger.records {
            if n == 0 {
                self.push(
                    &format!("{label}.trigger.records"),
                    span_of(&["trigger", "records"]),
                    "must be at least 1".into(),
                );
            } else if n > batch.max_records {
                self.push(
                    &format!("{label}.trigger.records"),
                    span_of(&["trigger", "records"]),
                    format!("{n} is more than batch.max_records ({}): the trigger could never cut a full batch", batch.max_records),
                );
            }
        }
        if layout.file.gzip_level > 9 {
            self.push(
                &format!("{label}.file.gzip_level"),
                span_of(&["file", "gzip_level"]),
                format!("{} is not a gzip level (0-9)", layout.file.gzip_level),
            );
        }
        let suffix = layout.file.name.literal_suffix();
        let ends_gz = [".pgp", ".gpg", ".asc"]
            .iter()
            .fold(suffix, |s, ext| s.strip_suffix(ext).unwrap_or(s))
            .ends_with(".gz");
        if layout.file.compression == Compression::Gzip && !ends_gz {
            self.push(
                &format!("{label}.file.name"),
                span_of(&["file", "name"]),
                "compression is gzip but the name pattern does not end in `.gz`".into(),
            );
        }
        if layout.file.compression == Compression::None && ends_gz {
            self.push(
                &format!("{label}.file.name"),
                span_of(&["file", "name"]),
                "the name ends in `.gz` but compression is none".into(),
            );
        }
        let csv = &layout.csv;
        if csv.delimiter == csv.quote {
            self.push(
                &format!("{label}.csv.delimiter"),
                span_of(&["csv", "delimiter"]),
                "delimiter and quote are the same character".into(),
            );
        }
        for (c, key) in [(csv.delimiter, "delimiter"), (csv.quote, "quote")] {
            if !c.is_ascii() {
                self.push(
                    &format!("{label}.csv.{key}"),
                    span_of(&["csv", key]),
                    format!("{c:?} is not a single-byte (ASCII) character"),
                );
            }
        }
        if let Some(c) = csv.escape {
            if !c.is_ascii() {
                self.push(
                    &format!("{label}.csv.escape"),
                    span_of(&["csv", "escape"]),
                    format!("{c:?} is not a single-byte (ASCII) character"),
                );
            }
        }
        let mut names = HashSet::new();
        for f in &layout.fields {
            if !names.insert(f.name.clone()) {
                self.push(
                    &format!("{label}.field[{}]", f.name),
                    span_of(&["field"]),
                    "duplicate output column name".into(),
                );
            }
        }
        // Layout rules only make sense once every part parsed (a broken
        // field would otherwise look like "no fields").
        if self.errors.len() == errors_before {
            for (key, message) in crate::assemble::check_layout(&layout) {
                // The most specific key of the path that exists in the file.
                let parts: Vec<&str> = key
                    .split('.')
                    .map(|p| p.split('[').next().unwrap_or(p))
                    .collect();
                let span = (1..=parts.len())
                    .rev()
                    .find_map(|n| span_of(&parts[..n]).filter(|_| n == parts.len() || n > 0));
                self.push(&format!("{label}.{key}"), span, message);
            }
        }
        if let Some(enc) = encryption.as_mut() {
            let base = self.base;
            let resolve = |p: &mut PathBuf| {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            };
            enc.recipients.iter_mut().for_each(resolve);
            if let Some(p) = enc.sign_key.as_mut() {
                resolve(p);
            }
            if let Some(p) = enc.verify_key.as_mut() {
                resolve(p);
            }
            for (key, message) in crate::assemble::encrypt::check(enc) {
                self.push(
                    &format!("{label}.encryption.{key}"),
                    span_of(&["encryption"]),
                    message,
                );
            }
        }
        if retry.max_attempts == 0 {
            self.push(
                &format!("{label}.retry.max_attempts"),
                span_of(&["retry", "max_attempts"]),
                "must be at least 1".into(),
            );
        }
        if retry.multiplier.is_nan() || retry.multiplier < 1.0 {
            self.push(
                &format!("{label}.retry.multiplier"),
                span_of(&["retry", "multiplier"]),
                "must be 1.0 or more".into(),
            );
        }
        if !(0.0..=1.0).contains(&retry.jitter) {
            self.push(
                &format!("{label}.retry.jitter"),
                span_of(&["retry", "jitter"]),
                "must be between 0.0 and 1.0".into(),
            );
        }
        if let Some(DestinationConfig::Http(h)) = &destination {
            let at = span_of(&["destination"]);
            if let Err(why) = super::secret::check_http_url(&h.url.0) {
                self.push(&format!("{label}.destination.url"), at.clone(), why);
            }
            if !matches!(h.method.to_ascii_uppercase().as_str(), "POST" | "PUT") {
                self.push(
                    &format!("{label}.destination.method"),
                    at.clone(),
                    format!("{:?}: use POST or PUT", h.method),
                );
            }
            if h.parallel == 0 {
                self.push(
                    &format!("{label}.destination.parallel"),
                    at.clone(),
                    "must be at least 1".into(),
                );
            }
            let known = [
                "{batch_id}",
                "{delivery}",
                "{part}",
                "{parts}",
                "{record_count}",
                "{name}",
            ];
            let templates = std::iter::once(("url".to_string(), h.url.0.clone())).chain(
                h.headers
                    .iter()
                    .map(|(k, v)| (format!("headers.{k}"), v.0.clone())),
            );
            for (key, t) in templates {
                for p in super::unknown_placeholders(&t, &known) {
                    self.push(
                        &format!("{label}.destination.{key}"),
                        at.clone(),
                        format!("unknown placeholder {p}; known: {}", known.join(" ")),
                    );
                }
            }
            for (k, v) in &h.headers {
                if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                    self.push(
                        &format!("{label}.destination.headers"),
                        at.clone(),
                        format!("{k:?} is not a valid header name"),
                    );
                }
                if v.0.contains(['\r', '\n']) {
                    self.push(
                        &format!("{label}.destination.headers.{k}"),
                        at.clone(),
                        "a header value cannot contain a line break".into(),
                    );
                }
            }
            if reqwest::header::HeaderName::from_bytes(h.idempotency_header.as_bytes()).is_err() {
                self.push(
                    &format!("{label}.destination.idempotency_header"),
                    at.clone(),
                    format!("{:?} is not a valid header name", h.idempotency_header),
                );
            }
            if h.timeout.0.is_zero() {
                self.push(
                    &format!("{label}.destination.timeout"),
                    at.clone(),
                    "must be more than 0 (it covers the whole request, upload included)".into(),
                );
            }
            if h.success_status.is_empty() {
                self.push(
                    &format!("{label}.destination.success_status"),
                    at.clone(),
                    "no status would count as success".into(),
                );
            }
            if let Some(ca) = &h.ca_file {
                let ca = if ca.is_relative() {
                    self.base.join(ca)
                } else {
                    ca.clone()
                };
                let ok = std::fs::read(&ca).ok().is_some_and(|pem| {
                    reqwest::Certificate::from_pem(&pem).is_ok()
                        && pem.windows(11).any(|w| w == b"-----BEGIN ")
                });
                if !ok {
                    self.push(
                        &format!("{label}.destination.ca_file"),
                        at.clone(),
                        format!("{} is not a readable PEM certificate", ca.display()),
                    );
                }
            }
            if h.success_json_path.is_some() != h.success_json_value.is_some() {
                self.push(
                    &format!("{label}.destination.success_json_path"),
                    at,
                    "set both success_json_path and success_json_value, or neither".into(),
                );
            }
        }
        if let Some(d) = &destination {
            let at = span_of(&["destination"]);
            for (key, message) in d.problems(self.base) {
                // Point at the key's own line when it is in the file.
                let first = key.split('.').next().unwrap_or(&key);
                let here = span_of(&["destination", first]).or_else(|| at.clone());
                self.push(&format!("{label}.destination.{key}"), here, message);
            }
        }
        if let Some(DestinationConfig::Sftp(s)) = &destination {
            let at = span_of(&["destination"]);
            if s.password.is_none() && s.private_key.is_none() {
                self.push(
                    &format!("{label}.destination"),
                    at.clone(),
                    "sftp needs `password` or `private_key`".into(),
                );
            }
            if s.passphrase.is_some() && s.private_key.is_none() {
                self.push(
                    &format!("{label}.destination.passphrase"),
                    at.clone(),
                    "`passphrase` without `private_key`".into(),
                );
            }
            if s.temp_suffix.is_empty() || s.temp_suffix.contains('/') {
                self.push(
                    &format!("{label}.destination.temp_suffix"),
                    at,
                    "must be a non-empty suffix without `/`".into(),
                );
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        if let Some(sc) = &scripts {
            for (role, p) in sc.files() {
                if !p.ends_with(".lua") || p.starts_with('/') || p.split('/').any(|c| c == "..") {
                    self.push(
                        &format!("{label}.script.{role}"),
                        span_of(&["script", role]),
                        format!(
                            "{p:?}: name a .lua file inside the scripts folder (relative, no `..`)"
                        ),
                    );
                }
            }
            if sc.batch_size == 0 || sc.batch_size > 1_000_000 {
                self.push(
                    &format!("{label}.script.batch_size"),
                    span_of(&["script", "batch_size"]),
                    "must be 1-1000000 records per call".into(),
                );
            }
            if sc.transform.is_some() && sc.mode == TransformMode::InsteadOfMapping {
                for (i, f) in layout.fields.iter().enumerate() {
                    if f.source.is_some() || !f.transform.is_empty() {
                        self.push(
                            &format!("{label}.field[{i}]"),
                            span_of(&["field"]),
                            format!(
                                "field {:?} has `source`/`transform`, but script.mode = \"instead_of_mapping\": the script replaces the mapping, so name the field as the script returns it (or use mode = \"after_mapping\")",
                                f.name
                            ),
                        );
                    }
                }
            }
            if sc.transform.is_none() && sc.response.is_none() && sc.schedule.is_none() {
                self.push(
                    &format!("{label}.script"),
                    span_of(&["script"]),
                    "names no script: set transform, response and/or schedule".into(),
                );
            }
        }
        Some(DeliveryConfig {
            name: name?,
            trigger,
            batch,
            layout,
            encryption,
            destination: destination?,
            retry,
            scripts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<ConfigError> {
        load_str(text, Path::new("t.toml"), Path::new("/base"))
            .err()
            .map(|e| e.errors)
            .unwrap_or_default()
    }

    const GOOD: &str = r#"
[store]
path = "q.db"

[[delivery]]
name = "acme"
timezone = "America/New_York"
[delivery.trigger]
records = 1000
cron = "0 2 * * *"
[delivery.file]
name = "leads_{date}_{batch_id}.csv.gz"
compression = "gzip"
[[delivery.field]]
name = "phone"
source = "Phone 1"
transform = ["digits_only"]
[delivery.destination]
type = "local"
dir = "outbox"
"#;

    #[test]
    fn good_config_loads_and_resolves_paths() {
        let c = load_str(GOOD, Path::new("t.toml"), Path::new("/base")).expect("valid");
        assert_eq!(c.store.path, PathBuf::from("/base/q.db"));
        let d = c.delivery("acme").expect("acme");
        assert!(d.trigger.schedule.is_some());
        match &d.destination {
            DestinationConfig::Local(l) => assert_eq!(l.dir, PathBuf::from("/base/outbox")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reports_every_error_with_path_and_line() {
        let text = r#"
[store]
pth = "x"

[[delivery]]
name = "a"
timezone = "EST"
colour = "blue"
[delivery.trigger]
records = 0
[delivery.destination]
type = "sftp"
host = "h"
username = "u"

[[delivery]]
name = "b"
[delivery.file]
name = "../{batch_id}.csv"
[delivery.destination]
type = "local"
dir = "x"
"#;
        let e = errs(text);
        let find = |p: &str| {
            e.iter()
                .find(|x| x.path.starts_with(p))
                .unwrap_or_else(|| panic!("no error for {p}: {e:#?}"))
        };
        assert_eq!(find("store").line, Some(3));
        let tz = find("delivery[a].timezone");
        assert_eq!(tz.line, Some(7));
        assert!(tz.message.contains("America/New_York"), "{}", tz.message);
        assert_eq!(find("delivery[a].colour").line, Some(8));
        assert_eq!(find("delivery[a].trigger.records").line, Some(10));
        assert!(find("delivery[a].destination").message.contains("password"));
        assert_eq!(find("delivery[b].file").line, Some(19));
        assert!(e.len() >= 6, "{e:#?}");
    }

    #[test]
    fn syntax_error_has_line() {
        let e = errs("[store\npath=1");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, Some(1));
    }

    #[test]
    fn missing_env_secret_names_variable_not_value() {
        let text = r#"
[[delivery]]
name = "s"
[delivery.destination]
type = "sftp"
host = "h"
username = "u"
password = "${env:CONSIGN_TEST_UNSET_PW}"
"#;
        let e = errs(text);
        assert!(
            e.iter()
                .any(|x| x.message.contains("CONSIGN_TEST_UNSET_PW")),
            "{e:#?}"
        );
    }
}
